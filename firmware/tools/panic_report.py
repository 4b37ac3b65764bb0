#!/usr/bin/env python3
"""List where a firmware ELF can still panic, with the source lines of each call.

Usage: panic_report.py ELF

The ELF is the `no-panic` binary built with the `report-panics` feature (so it
links with its panics) and with debug information. The script disassembles it and
finds every function from which core's panic functions are reachable. It prints
each call from code outside `core` into them, with the inlined source lines that
addr2line gives for the call's address and for the branches that lead to it.
Exits 1 when it finds any.
"""

import re
import subprocess
import sys
from collections import defaultdict

FUNCTION = re.compile(r"^([0-9a-f]+) <(.+)>:$")
# Calls and branches to a symbol: bl, blx, every b<cond> with or without .w/.n,
# and cbz/cbnz.
BRANCH = re.compile(
    r"^\s*(?P<address>[0-9a-f]+):\s+(?P<encoding>(?:[0-9a-f]{4}\s?){1,2})\s+"
    r"(?:bl|blx|b[a-z]{0,2}(?:\.[wn])?|cbn?z\s+\w+,)\s*"
    r"(?P<target>[0-9a-f]+) <(?P<symbol>.+?)(?:\+0x[0-9a-f]+)?>\s*$"
)
# The halfword lld fills the gaps between functions with. objdump decodes it as a
# conditional branch, but no code executes it.
PADDING = "d4d4"
PANIC_ROOTS = ("core::panicking::", "rust_begin_unwind")


def is_core(name):
    """Return whether a symbol belongs to core or compiler_builtins."""
    return bool(re.match(r"^<?(core::|compiler_builtins::|<\[)", name)) or "rust_begin_unwind" in name


def disassemble(elf):
    """Return the calls between functions, (caller, address, callee) triples, and
    the branches inside functions, (function, address, target address) triples."""
    text = subprocess.run(
        ["arm-none-eabi-objdump", "-d", "-C", elf], check=True, capture_output=True, text=True
    ).stdout
    calls = []
    jumps = []
    current = None
    for line in text.splitlines():
        header = FUNCTION.match(line)
        if header:
            current = header.group(2)
            continue
        branch = BRANCH.match(line)
        if branch is None or current is None or branch["encoding"].strip() == PADDING:
            continue
        if branch["symbol"] != current:
            calls.append((current, branch["address"], branch["symbol"]))
        else:
            jumps.append((current, int(branch["address"], 16), int(branch["target"], 16)))
    return calls, jumps


def source_lines(elf, address):
    """Return the inlined source lines of an address, innermost first."""
    text = subprocess.run(
        ["arm-none-eabi-addr2line", "-e", elf, "-f", "-i", "-C", "-p", address],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    return [re.sub(r"/\S*/library/", "core library: ", line) for line in text.splitlines()]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: panic_report.py ELF")
    elf = sys.argv[1]
    calls, jumps = disassemble(elf)

    callers = defaultdict(set)
    for caller, _, callee in calls:
        callers[callee].add(caller)
    panicking = {name for _, _, name in calls if any(root in name for root in PANIC_ROOTS)}
    pending = list(panicking)
    while pending:
        name = pending.pop()
        for caller in callers[name]:
            if caller not in panicking:
                panicking.add(caller)
                pending.append(caller)

    sites = [(caller, address, callee) for caller, address, callee in calls
             if callee in panicking and is_core(callee) and not is_core(caller)]
    if not sites:
        print("no panic reachable")
        return
    for caller, address, callee in sites:
        print(f"panic reachable: {caller} calls {callee} at 0x{address}")
        for line in source_lines(elf, address):
            print("    " + line)
        # Compiled code often shares one panic call between several checks, which
        # then branch to it; their lines show which check it is. The arguments of
        # the call take a few instructions before it.
        call = int(address, 16)
        for function, source, target in jumps:
            if function == caller and call - 8 <= target <= call:
                print(f"  reached from the branch at {source:#x}:")
                for line in source_lines(elf, f"{source:#x}"):
                    print("    " + line)
    sys.exit(1)


if __name__ == "__main__":
    main()
