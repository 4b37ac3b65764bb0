//! Decoding: one new token at a time against a fixed-capacity key/value cache.

use crate::adapter::{check_finite, check_len, check_result_at};
use crate::attention::{check_scratch, split_scratch};
use crate::error::{Error, Operand};
use crate::multihead::config::{AdapterMode, AttentionConfig, SOFTMAX_STATE_LEN};
use crate::multihead::forward::Block;
use crate::multihead::linear::build_projections;
use crate::multihead::weights::{validate_weights, AttentionWeights};
use crate::real::Real;

/// The keys and values of the tokens decoded so far, in caller-provided slices.
///
/// Each half contains `capacity` rows of `kv_dim` values (row-major, one row per token),
/// so a token costs [`AttentionConfig::cache_bytes_per_token`] bytes. Rows at and
/// after [`KvCache::len`] are free.
#[derive(Debug)]
pub struct KvCache<'a, T> {
    keys: &'a mut [T],
    values: &'a mut [T],
    kv_dim: usize,
    len: usize,
}

impl<'a, T: Real> KvCache<'a, T> {
    /// Creates an empty cache over two slices of [`AttentionConfig::cache_len`]
    /// elements each, whose contents are ignored.
    ///
    /// # Errors
    ///
    /// The configuration's errors ([`AttentionConfig::validate`]), and
    /// [`Error::LengthMismatch`] when the slices differ in length or are not a whole
    /// number of rows (the expected length is then the value cache's, or the next
    /// whole number of rows below).
    pub fn new(
        config: &AttentionConfig<T>,
        keys: &'a mut [T],
        values: &'a mut [T],
    ) -> Result<Self, Error> {
        config.validate()?;
        let kv_dim = config.kv_dim().ok_or(Error::SizeOverflow)?;
        let whole_rows = keys.len() - keys.len() % kv_dim.max(1);
        check_len(Operand::KeyCache, whole_rows, keys.len())?;
        check_len(Operand::ValueCache, keys.len(), values.len())?;
        Ok(KvCache {
            keys,
            values,
            kv_dim,
            len: 0,
        })
    }

    /// Returns the number of cached tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the number of tokens the cache can hold.
    pub fn capacity(&self) -> usize {
        self.keys.len() / self.kv_dim.max(1)
    }

    /// Forgets every cached token, to start a new sequence.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps only the first `len` cached tokens, for example to roll back tokens a
    /// draft model proposed. A `len` at or above the current length changes nothing.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Returns the cached keys, `len x kv_dim`.
    pub fn keys(&self) -> &[T] {
        self.keys.get(..self.len * self.kv_dim).unwrap_or_default()
    }

    /// Returns the cached values, `len x kv_dim`.
    pub fn values(&self) -> &[T] {
        self.values
            .get(..self.len * self.kv_dim)
            .unwrap_or_default()
    }
}

/// Computes the output row of one new token and appends its key and value to the
/// cache.
///
/// The token is at position `p = cache.len()`: its query and key are rotated by `p`
/// (with rotary embedding), and it attends to the `p + 1` cached tokens including
/// itself. That is row `p` of [`multi_head_attention`](crate::multi_head_attention)
/// over all tokens so far under the causal mask. Without the mask the last row is
/// the same, because no later token exists yet. The earlier cached rows are only read.
/// `x_row` and `out_row` have `dim` values; the scratch needs
/// [`AttentionConfig::decode_scratch_len`] elements. Each step costs
/// `O(p * dim)` for the scores and weighted sums plus the fixed projections.
///
/// # Errors
///
/// The errors of [`multi_head_attention`](crate::multi_head_attention) that apply
/// to one row, [`Error::LengthMismatch`] naming [`Operand::KeyCache`] when the cache
/// was made for another key/value width, and [`Error::CacheFull`] when it has no
/// free row. After any error the cache is as it was: its length is unchanged and its
/// earlier rows are untouched. After a numeric error `out_row` is filled with NaN.
///
/// # Example
///
/// ```
/// use lora_attention::{decode_step, AdapterMode, AttentionConfig, AttentionWeights, KvCache, RotaryEmbedding};
///
/// let config = AttentionConfig { causal: true, rope: Some(RotaryEmbedding { base: 10000.0 }), ..AttentionConfig::new(4, 2) };
/// let identity = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
/// let weights = AttentionWeights::new(&identity, &identity, &identity);
///
/// let mut keys = [0.0; 3 * 4];
/// let mut values = [0.0; 3 * 4];
/// let mut cache = KvCache::new(&config, &mut keys, &mut values)?;
/// let mut scratch = [0.0; 64];
/// let mut out = [0.0; 4];
/// for token in [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]] {
///     decode_step(&config, AdapterMode::Factored, &weights, &mut cache, &token, &mut scratch, &mut out)?;
/// }
/// assert_eq!(cache.len(), 3);
/// let full = decode_step(&config, AdapterMode::Factored, &weights, &mut cache, &[0.0; 4], &mut scratch, &mut out);
/// assert_eq!(full, Err(lora_attention::Error::CacheFull { capacity: 3 }));
/// # Ok::<(), lora_attention::Error>(())
/// ```
pub fn decode_step<T: Real>(
    config: &AttentionConfig<T>,
    mode: AdapterMode,
    weights: &AttentionWeights<'_, T>,
    cache: &mut KvCache<'_, T>,
    x_row: &[T],
    scratch: &mut [T],
    out_row: &mut [T],
) -> Result<(), Error> {
    config.validate()?;
    let kv_dim = config.kv_dim().ok_or(Error::SizeOverflow)?;
    check_len(Operand::Input, config.dim, x_row.len())?;
    check_len(Operand::Output, config.dim, out_row.len())?;
    if cache.kv_dim != kv_dim {
        return Err(Error::LengthMismatch {
            operand: Operand::KeyCache,
            expected: cache.capacity().saturating_mul(kv_dim),
            actual: cache.keys.len(),
        });
    }
    let scales = validate_weights(config, weights)?;
    let required = check_scratch(config.decode_scratch_len(mode), scratch.len())?;
    if cache.len >= cache.capacity() {
        return Err(Error::CacheFull {
            capacity: cache.capacity(),
        });
    }
    check_finite(Operand::Input, x_row)?;

    let position = cache.len;
    let result = (|| {
        let (scratch, _) = split_scratch(scratch, required)?;
        let merged_len = config.merged_weights_len(mode).ok_or(Error::SizeOverflow)?;
        let (merged, rest) = split_scratch(scratch, merged_len)?;
        let (adapter_row, rest) = split_scratch(rest, config.adapter_row_len(mode))?;
        let (query, rest) = split_scratch(rest, config.dim)?;
        let (heads, rest) = split_scratch(rest, config.dim)?;
        let (states, _) = split_scratch(rest, config.heads * SOFTMAX_STATE_LEN)?;
        let projections = build_projections(config, mode, weights, &scales, merged)?;
        let block = Block::new(config, projections, position + 1)?;

        // Step 1: the new key and value, written into the first free row.
        let key_row = cache
            .keys
            .chunks_exact_mut(kv_dim.max(1))
            .nth(position)
            .ok_or(Error::CacheFull { capacity: position })?;
        block
            .projections
            .key
            .apply_rows(x_row, key_row, adapter_row);
        block.rotate(key_row, kv_dim, position);
        check_result_at(Operand::Key, key_row, 0)?;
        let value_row = cache
            .values
            .chunks_exact_mut(kv_dim.max(1))
            .nth(position)
            .ok_or(Error::CacheFull { capacity: position })?;
        block
            .projections
            .value
            .apply_rows(x_row, value_row, adapter_row);
        check_result_at(Operand::Value, value_row, 0)?;

        // Step 2: the query, attending to every cached token including itself.
        block
            .projections
            .query
            .apply_rows(x_row, query, adapter_row);
        block.rotate(query, config.dim, position);
        check_result_at(Operand::Query, query, 0)?;
        let cached_keys = &*cache.keys;
        let cached_values = &*cache.values;
        let count = position + 1;
        block.attend_stored(
            query,
            cached_keys,
            cached_values,
            count,
            states,
            heads,
            0,
            count,
        )?;
        check_result_at(Operand::HeadOutput, heads, 0)?;
        block.finish_rows(heads, out_row, adapter_row, 0)
    })();

    match result {
        Ok(()) => {
            cache.len = position + 1;
            Ok(())
        }
        Err(error) => {
            out_row.fill(T::nan());
            Err(error)
        }
    }
}
