//! Multi-head attention over a whole sequence, in each of the three forms.

use crate::adapter::{check_finite, check_len, check_result_at};
use crate::attention::{check_scratch, poison_on_error, split_scratch};
use crate::error::{Dimension, Error, Operand, StreamingLimit};
use crate::linalg::dot;
use crate::multihead::config::{AttentionConfig, Form, Plan, SOFTMAX_STATE_LEN};
use crate::multihead::linear::{build_projections, rotate_rows, Projections};
use crate::multihead::weights::{validate_weights, AttentionWeights};
use crate::online::{self, Rows};
use crate::real::Real;
use crate::softmax::softmax_finite_max;
use crate::steps::inverse_sqrt;

/// Computes multi-head attention over `plan.seq_len` tokens.
///
/// With `n = plan.seq_len`, `x` and `out` are `n x dim`. See [`AttentionConfig`] for
/// the weights and [`AttentionWeights`] for their slices. Each projection is
/// `y = x W^T + bias`, with `W` adapted to `W + s B A`. With rotary embedding,
/// queries and keys are then rotated. Query head `h` attends to key/value head
/// `h / (heads / kv_heads)` with scores `q . k / sqrt(head_dim)`, masked to earlier
/// keys when causal. The heads are concatenated and, with an output projection,
/// multiplied by `Wo^T` plus its bias. With one head, no mask, no bias, no rotary
/// embedding, no output projection and an adapter on the query only, this is
/// [`attention`](crate::attention).
///
/// The scratch needs [`AttentionConfig::scratch_len`] elements for the plan. The
/// [`Form`] trades scratch for what it supports, and [`AdapterMode`](crate::AdapterMode)
/// chooses between merging adapters into scratch and applying them factored.
///
/// # Errors
///
/// Nothing is written when one of these is found:
/// - the configuration's errors ([`AttentionConfig::validate`]);
/// - [`Error::ZeroDimension`] for `seq_len` or `block_rows` of 0;
/// - [`Error::StreamingUnsupported`] for [`Form::Streaming`] with rotary embedding;
/// - [`Error::LengthMismatch`] for `x`, `out`, a weight, bias or adapter factor of
///   the wrong length, and [`Error::ScratchTooSmall`];
/// - [`Error::NonFiniteInput`] or [`Error::InvalidScale`] for NaN or infinite inputs.
///
/// [`Error::NonFiniteResult`] reports an intermediate that overflowed:
/// [`Operand::MergedWeight`], [`Operand::Query`], [`Operand::Key`],
/// [`Operand::Value`], [`Operand::FoldedQuery`] (streaming), [`Operand::Scores`]
/// (indexed as `(head * n + query) * n + key`), [`Operand::HeadOutput`] or
/// [`Operand::Output`]. `out` is then filled with NaN.
///
/// # Example
///
/// ```
/// use lora_attention::{
///     multi_head_attention, AdapterMode, AttentionConfig, AttentionWeights, Form, Plan,
/// };
///
/// // Two heads of width 2 sharing one key/value head, causal.
/// let config = AttentionConfig { kv_heads: 1, causal: true, ..AttentionConfig::new(4, 2) };
/// let wq = [0.5; 16];
/// let wk = [0.25; 8];
/// let wv = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
/// let weights = AttentionWeights::new(&wq, &wk, &wv);
/// let plan = Plan { seq_len: 3, form: Form::KeepKeyValue, adapters: AdapterMode::Factored };
/// let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
/// let mut scratch = vec![0.0; config.scratch_len(plan).unwrap()];
/// let mut out = [0.0; 12];
/// multi_head_attention(&config, plan, &x, &weights, &mut scratch, &mut out)?;
/// // The first token sees only itself: each head outputs its value, (x0, x1).
/// assert_eq!(&out[..4], &[1.0, 2.0, 1.0, 2.0]);
/// # Ok::<(), lora_attention::Error>(())
/// ```
pub fn multi_head_attention<T: Real>(
    config: &AttentionConfig<T>,
    plan: Plan,
    x: &[T],
    weights: &AttentionWeights<'_, T>,
    scratch: &mut [T],
    out: &mut [T],
) -> Result<(), Error> {
    config.validate()?;
    if plan.seq_len == 0 {
        return Err(Error::ZeroDimension {
            dimension: Dimension::SeqLen,
        });
    }
    if let Form::Streaming { block_rows } = plan.form {
        if block_rows == 0 {
            return Err(Error::ZeroDimension {
                dimension: Dimension::BlockRows,
            });
        }
        if config.rope.is_some() {
            return Err(Error::StreamingUnsupported {
                reason: StreamingLimit::RotaryEmbedding,
            });
        }
    }
    let input_len = config.input_len(plan.seq_len).ok_or(Error::SizeOverflow)?;
    check_len(Operand::Input, input_len, x.len())?;
    check_len(Operand::Output, input_len, out.len())?;
    let scales = validate_weights(config, weights)?;
    let required = check_scratch(config.scratch_len(plan), scratch.len())?;
    check_finite(Operand::Input, x)?;

    let result = (|| {
        let (scratch, _) = split_scratch(scratch, required)?;
        let merged_len = config
            .merged_weights_len(plan.adapters)
            .ok_or(Error::SizeOverflow)?;
        let (merged, rest) = split_scratch(scratch, merged_len)?;
        let (adapter_row, rest) = split_scratch(rest, config.adapter_row_len(plan.adapters))?;
        let projections = build_projections(config, plan.adapters, weights, &scales, merged)?;
        let block = Block::new(config, projections, plan.seq_len)?;
        match plan.form {
            Form::Straightforward => block.straightforward(x, adapter_row, rest, out),
            Form::KeepKeyValue => block.keep_key_value(x, adapter_row, rest, out),
            Form::Streaming { block_rows } => {
                block.streaming(x, block_rows, adapter_row, rest, out)
            }
        }
    })();
    poison_on_error(result, out)
}

/// One validated call: the configuration, its projections and derived widths.
pub(crate) struct Block<'a, T> {
    pub(crate) config: &'a AttentionConfig<T>,
    pub(crate) projections: Projections<'a, T>,
    pub(crate) seq_len: usize,
    pub(crate) dim: usize,
    pub(crate) head_dim: usize,
    pub(crate) kv_dim: usize,
    pub(crate) group_size: usize,
    pub(crate) inverse_sqrt: T,
}

impl<'a, T: Real> Block<'a, T> {
    /// Derives the widths of a validated configuration.
    pub(crate) fn new(
        config: &'a AttentionConfig<T>,
        projections: Projections<'a, T>,
        seq_len: usize,
    ) -> Result<Self, Error> {
        let head_dim = config.head_dim();
        Ok(Block {
            config,
            projections,
            seq_len,
            dim: config.dim,
            head_dim,
            kv_dim: config.kv_dim().ok_or(Error::SizeOverflow)?,
            group_size: config.group_size().max(1),
            inverse_sqrt: inverse_sqrt(head_dim)?,
        })
    }

    /// Rotates rows of queries or keys when the configuration has rotary embedding.
    pub(crate) fn rotate(&self, rows: &mut [T], width: usize, first_position: usize) {
        if let Some(rope) = self.config.rope {
            rotate_rows(rows, width, self.head_dim, first_position, rope.base);
        }
    }

    /// Returns the key/value head that query head `head` reads.
    pub(crate) fn kv_head(&self, head: usize) -> usize {
        // `new` makes group_size at least 1. max(1) lets the compiler drop its zero check.
        head / self.group_size.max(1)
    }

    /// Returns the keys or values of key/value head `group` as rows.
    pub(crate) fn head_rows<'b>(&self, data: &'b [T], group: usize) -> Rows<'b, T> {
        Rows {
            data,
            stride: self.kv_dim,
            offset: group * self.head_dim,
            width: self.head_dim,
        }
    }

    /// Writes the output row(s) from the concatenated heads: `Wo` and its bias when
    /// there is an output projection, a copy otherwise.
    pub(crate) fn finish_rows(
        &self,
        heads: &[T],
        out: &mut [T],
        adapter_row: &mut [T],
        offset: usize,
    ) -> Result<(), Error> {
        if self.config.output_projection {
            self.projections.output.apply_rows(heads, out, adapter_row);
        } else {
            // Both are `dim` values per row; a zip needs no second length check.
            for (element, &head_element) in out.iter_mut().zip(heads) {
                *element = head_element;
            }
        }
        check_result_at(Operand::Output, out, offset)
    }

    /// Computes the keys and values of `x` (rotating the keys), checking both.
    fn keys_and_values(
        &self,
        x: &[T],
        k: &mut [T],
        v: &mut [T],
        adapter_row: &mut [T],
    ) -> Result<(), Error> {
        self.projections.key.apply_rows(x, k, adapter_row);
        self.rotate(k, self.kv_dim, 0);
        check_result_at(Operand::Key, k, 0)?;
        self.projections.value.apply_rows(x, v, adapter_row);
        check_result_at(Operand::Value, v, 0)
    }

    /// Runs one query row's heads over stored keys and values with an online softmax,
    /// writing the concatenated head outputs into `heads`.
    ///
    /// `states` contains [`SOFTMAX_STATE_LEN`] values per head and `count` keys are read.
    /// In error reports, the scores of head `h` start at
    /// `h * head_score_stride + first_score`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attend_stored(
        &self,
        query: &[T],
        keys: &[T],
        values: &[T],
        count: usize,
        states: &mut [T],
        heads: &mut [T],
        first_score: usize,
        head_score_stride: usize,
    ) -> Result<(), Error> {
        // head_dim is at least 1 in a validated configuration. max(1) lets the
        // compiler drop its zero check.
        let head_dim = self.head_dim.max(1);
        let per_head = query
            .chunks_exact(head_dim)
            .zip(states.chunks_exact_mut(SOFTMAX_STATE_LEN))
            .zip(heads.chunks_exact_mut(head_dim));
        for (head, ((query_head, state), head_out)) in per_head.enumerate() {
            let group = self.kv_head(head);
            let score_offset = head
                .saturating_mul(head_score_stride)
                .saturating_add(first_score);
            online::attend(
                query_head,
                self.head_rows(keys, group),
                self.head_rows(values, group),
                count,
                self.inverse_sqrt,
                state,
                head_out,
                score_offset,
            )?;
        }
        Ok(())
    }

    /// Computes the straightforward form: `Q`, `K`, `V` and one head's score matrix
    /// at a time.
    fn straightforward(
        &self,
        x: &[T],
        adapter_row: &mut [T],
        scratch: &mut [T],
        out: &mut [T],
    ) -> Result<(), Error> {
        let n = self.seq_len;
        let (q, rest) = split_scratch(scratch, n * self.dim)?;
        let (k, rest) = split_scratch(rest, n * self.kv_dim)?;
        let (v, rest) = split_scratch(rest, n * self.kv_dim)?;
        let (scores, rest) = split_scratch(rest, n * n)?;

        // Step 1: the projections, with queries and keys rotated.
        self.projections.query.apply_rows(x, q, adapter_row);
        self.rotate(q, self.dim, 0);
        check_result_at(Operand::Query, q, 0)?;
        self.keys_and_values(x, k, v, adapter_row)?;

        // Step 2: every head, then the output projection.
        if self.config.output_projection {
            let (heads, _) = split_scratch(rest, n * self.dim)?;
            self.attend_full(q, k, v, scores, heads)?;
            check_result_at(Operand::HeadOutput, heads, 0)?;
            self.finish_rows(heads, out, adapter_row, 0)
        } else {
            self.attend_full(q, k, v, scores, out)?;
            check_result_at(Operand::Output, out, 0)
        }
    }

    /// Computes every head with a full score matrix, writing the concatenated heads.
    fn attend_full(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        scores: &mut [T],
        heads: &mut [T],
    ) -> Result<(), Error> {
        // Neither is 0 in a validated call. max(1) lets the compiler drop its zero check.
        let n = self.seq_len.max(1);
        let dim = self.dim.max(1);
        heads.fill(T::zero());
        for head in 0..self.config.heads {
            let group = self.kv_head(head);
            let query_offset = head * self.head_dim;

            // Step 1: scores, with masked keys at negative infinity.
            let query_rows = q.chunks_exact(dim).zip(scores.chunks_exact_mut(n));
            for (i, (q_row, score_row)) in query_rows.enumerate() {
                let query = q_row
                    .get(query_offset..query_offset + self.head_dim)
                    .unwrap_or_default();
                let keys = self.head_rows(k, group).iter_from(0);
                for (j, (score, key)) in score_row.iter_mut().zip(keys).enumerate() {
                    *score = if self.config.causal && j > i {
                        T::neg_infinity()
                    } else {
                        dot(query, key) * self.inverse_sqrt
                    };
                }
            }
            let masked_or_finite = |score: &T| score.is_finite() || *score == T::neg_infinity();
            if let Some(index) = scores.iter().position(|score| !masked_or_finite(score)) {
                return Err(Error::NonFiniteResult {
                    operand: Operand::Scores,
                    index: head
                        .saturating_mul(n)
                        .saturating_mul(n)
                        .saturating_add(index),
                });
            }

            // Step 2: softmax of each row; the diagonal is never masked.
            for row in scores.chunks_exact_mut(n) {
                let max = row
                    .iter()
                    .fold(T::neg_infinity(), |max, &score| max.max(score));
                softmax_finite_max(row, max);
            }

            // Step 3: this head's output, P V_g, into its columns of the heads.
            for (probabilities, head_row) in scores.chunks_exact(n).zip(heads.chunks_exact_mut(dim))
            {
                let head_out = head_row
                    .get_mut(query_offset..query_offset + self.head_dim)
                    .unwrap_or_default();
                for (&p, value) in probabilities
                    .iter()
                    .zip(self.head_rows(v, group).iter_from(0))
                {
                    for (element, &value_element) in head_out.iter_mut().zip(value) {
                        *element = p.multiply_add(value_element, *element);
                    }
                }
            }
        }
        Ok(())
    }

    /// Computes the form that keeps `K` and `V`, running each query row with an
    /// online softmax.
    fn keep_key_value(
        &self,
        x: &[T],
        adapter_row: &mut [T],
        scratch: &mut [T],
        out: &mut [T],
    ) -> Result<(), Error> {
        let n = self.seq_len;
        let (k, rest) = split_scratch(scratch, n * self.kv_dim)?;
        let (v, rest) = split_scratch(rest, n * self.kv_dim)?;
        let (query, rest) = split_scratch(rest, self.dim)?;
        let (heads, rest) = split_scratch(rest, self.dim)?;
        let (states, _) = split_scratch(rest, self.config.heads * SOFTMAX_STATE_LEN)?;

        self.keys_and_values(x, k, v, adapter_row)?;

        // dim is at least 1 in a validated configuration. max(1) lets the compiler
        // drop its zero check.
        let dim = self.dim.max(1);
        let rows = x.chunks_exact(dim).zip(out.chunks_exact_mut(dim));
        for (i, (x_row, out_row)) in rows.enumerate() {
            self.projections.query.apply_rows(x_row, query, adapter_row);
            self.rotate(query, self.dim, i);
            check_result_at(Operand::Query, query, i * self.dim)?;

            let count = if self.config.causal { i + 1 } else { n };
            // The scores are never stored, so their indices may exceed usize on
            // 32-bit targets; they saturate instead.
            let first_score = i.saturating_mul(n);
            let head_stride = n.saturating_mul(n);
            self.attend_stored(query, k, v, count, states, heads, first_score, head_stride)?;
            check_result_at(Operand::HeadOutput, heads, i * self.dim)?;
            self.finish_rows(heads, out_row, adapter_row, i * self.dim)?;
        }
        Ok(())
    }

    /// Computes the streaming form: queries folded through the key weight, one pass
    /// over the input rows per block of queries, no keys or values stored.
    fn streaming(
        &self,
        x: &[T],
        block_rows: usize,
        adapter_row: &mut [T],
        scratch: &mut [T],
        out: &mut [T],
    ) -> Result<(), Error> {
        let row_len = self.config.streaming_row_len().ok_or(Error::SizeOverflow)?;
        // A validated configuration has none of these at zero. Checking here lets
        // the compiler drop the zero-size checks of the chunks in this form's steps.
        if self.dim == 0 || self.head_dim == 0 || row_len == 0 {
            return Err(Error::ZeroDimension {
                dimension: Dimension::Dim,
            });
        }
        let block_rows = block_rows.min(self.seq_len);
        let (region, _) = split_scratch(scratch, block_rows * row_len)?;
        // max(1) keeps the chunk size nonzero even if the product wraps.
        let block_len = (block_rows * self.dim).max(1);
        let blocks = x.chunks(block_len).zip(out.chunks_mut(block_len));
        for (block_index, (x_block, out_block)) in blocks.enumerate() {
            let first_row = block_index * block_rows;
            let rows = x_block.len() / self.dim;
            let (region, _) = split_scratch(region, rows * row_len)?;
            self.fold_queries(x_block, first_row, region, row_len, adapter_row)?;
            self.stream_keys(x, first_row, region, row_len)?;
            self.finish_streamed(first_row, region, row_len, out_block, adapter_row)?;
        }
        Ok(())
    }

    /// Splits one row of the streaming region into query, heads, folded queries,
    /// weighted sums and softmax states.
    #[allow(clippy::type_complexity)]
    fn split_streaming_row<'b>(
        &self,
        row: &'b mut [T],
    ) -> Result<
        (
            &'b mut [T],
            &'b mut [T],
            &'b mut [T],
            &'b mut [T],
            &'b mut [T],
        ),
        Error,
    > {
        let heads = self.config.heads;
        let (query, rest) = split_scratch(row, self.dim)?;
        let (head_outputs, rest) = split_scratch(rest, self.dim)?;
        let (folded, rest) = split_scratch(rest, heads * self.dim)?;
        let (sums, rest) = split_scratch(rest, heads * self.dim)?;
        let (states, _) = split_scratch(rest, heads * SOFTMAX_STATE_LEN)?;
        Ok((query, head_outputs, folded, sums, states))
    }

    /// Projects each query of a block and folds each head through its key head's
    /// weight: `Wk_g^T q_h` (plus the factored key adapter). The key bias adds the
    /// same `q_h . bk_g` to every score of a head, which the softmax cancels, so it
    /// is left out.
    fn fold_queries(
        &self,
        x_block: &[T],
        first_row: usize,
        region: &mut [T],
        row_len: usize,
        adapter_row: &mut [T],
    ) -> Result<(), Error> {
        for (index, (x_row, row)) in x_block
            .chunks_exact(self.dim)
            .zip(region.chunks_exact_mut(row_len))
            .enumerate()
        {
            let (query, _, folded, sums, states) = self.split_streaming_row(row)?;
            let offset = (first_row + index) * self.dim;
            self.projections.query.apply_rows(x_row, query, adapter_row);
            check_result_at(Operand::Query, query, offset)?;

            for (head, (query_head, folded_head)) in query
                .chunks_exact(self.head_dim)
                .zip(folded.chunks_exact_mut(self.dim))
                .enumerate()
            {
                let group = self.kv_head(head);
                folded_head.fill(T::zero());
                self.projections.key.add_transposed(
                    query_head,
                    group * self.head_dim,
                    folded_head,
                    adapter_row,
                );
            }
            check_result_at(
                Operand::FoldedQuery,
                folded,
                (first_row + index) * self.config.heads * self.dim,
            )?;

            for (state, sum) in states
                .chunks_exact_mut(SOFTMAX_STATE_LEN)
                .zip(sums.chunks_exact_mut(self.dim))
            {
                online::start(state, sum);
            }
        }
        Ok(())
    }

    /// Reads the input rows once for a block of queries, `KEY_BLOCK` rows at a time,
    /// updating every head's running softmax and weighted sum of input rows.
    fn stream_keys(
        &self,
        x: &[T],
        first_row: usize,
        region: &mut [T],
        row_len: usize,
    ) -> Result<(), Error> {
        let n = self.seq_len;
        let rows_in_block = region.len() / row_len.max(1);
        let end = if self.config.causal {
            (first_row + rows_in_block).min(n)
        } else {
            n
        };
        let input_rows = Rows {
            data: x,
            stride: self.dim,
            offset: 0,
            width: self.dim,
        };
        let keys_per_block = SOFTMAX_STATE_LEN - 2;
        let mut first_key = 0;
        while first_key < end {
            for (index, row) in region.chunks_exact_mut(row_len).enumerate() {
                let i = first_row + index;
                let limit = if self.config.causal { i + 1 } else { n };
                if first_key >= limit {
                    continue;
                }
                let count = keys_per_block.min(limit - first_key);
                let (_, _, folded, sums, states) = self.split_streaming_row(row)?;
                let per_head = folded
                    .chunks_exact(self.dim)
                    .zip(sums.chunks_exact_mut(self.dim))
                    .zip(states.chunks_exact_mut(SOFTMAX_STATE_LEN));
                for (head, ((folded_head, sum), state)) in per_head.enumerate() {
                    let score_offset = head
                        .saturating_mul(n)
                        .saturating_add(i)
                        .saturating_mul(n)
                        .saturating_add(first_key);
                    online::update(
                        folded_head,
                        input_rows,
                        input_rows,
                        first_key,
                        count,
                        self.inverse_sqrt,
                        state,
                        sum,
                        score_offset,
                    )?;
                }
            }
            first_key += keys_per_block;
        }
        Ok(())
    }

    /// Turns each head's weighted sum of input rows into its output,
    /// `Wv_g sum + bv_g` (plus the factored value adapter), and writes the output rows.
    fn finish_streamed(
        &self,
        first_row: usize,
        region: &mut [T],
        row_len: usize,
        out_block: &mut [T],
        adapter_row: &mut [T],
    ) -> Result<(), Error> {
        for (index, (row, out_row)) in region
            .chunks_exact_mut(row_len)
            .zip(out_block.chunks_exact_mut(self.dim))
            .enumerate()
        {
            let (_, head_outputs, _, sums, states) = self.split_streaming_row(row)?;
            let per_head = sums
                .chunks_exact_mut(self.dim)
                .zip(states.chunks_exact(SOFTMAX_STATE_LEN))
                .zip(head_outputs.chunks_exact_mut(self.head_dim));
            for (head, ((sum, state), head_out)) in per_head.enumerate() {
                online::finish(state, sum);
                let group = self.kv_head(head);
                self.projections.value.apply_row_range(
                    sum,
                    group * self.head_dim,
                    head_out,
                    adapter_row,
                );
            }
            let offset = (first_row + index) * self.dim;
            check_result_at(Operand::HeadOutput, head_outputs, offset)?;
            self.finish_rows(head_outputs, out_row, adapter_row, offset)?;
        }
        Ok(())
    }
}
