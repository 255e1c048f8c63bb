#!/usr/bin/env python3
"""Static performance report of a kernel family, read off its SASS.

Compiles kernels/<family>.cu for each target exactly as build.rs does (one
cubin per target, ptxas -v kept), disassembles it with cuobjdump, and prints
per entry point: registers, shared memory, spills, theoretical occupancy and,
for the main loop (the loop holding the most HMMA): issued instructions per
HMMA, shared-memory bytes per HMMA (ldmatrix/LDS reads plus cp.async writes),
and the issue-bound and shared-bandwidth-bound ceilings as a share of the
target's mma.sync peak and of its dense bf16 peak. The model, its constants
and their sources are in kernels/README.md ("Static performance model").

    tools/sass_report.py                          # conv, every target, a table
    tools/sass_report.py --arch sm_90a --json out.json
    tools/sass_report.py --check                  # exit 1 if a goal is missed

wgmma kernels (sm_90a, conv_sm90) get their own figures: tools/sass_hopper.py.

Needs nvcc and cuobjdump + nvdisasm: scripts/setup-cuda.sh installs all three
(pinned); NVCC / CUOBJDUMP override. Python standard library only.

What a static count cannot see: stalls (latency, dependencies), the dynamic
trip count of an inner loop (counted once, and flagged), achieved clocks,
caches, how often a branch is taken. The ceilings are upper bounds, not
predictions. One branch is modelled: code a warp skips on a vote (attention's
rebase) is left out of the main loop's "common path" figures, which the
attention goal reads; the whole loop's count is reported beside them.
"""
import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import sass_hopper

ROOT = Path(__file__).resolve().parent.parent
ARCHS = ["sm_80", "sm_86", "sm_89", "sm_90a"]

# Per target: the mma.sync m16n8k16 bf16 rate (HMMA.16816 per SM per clock),
# the dense bf16 peak in the same unit (wgmma on sm_90a), and the limits that
# bound occupancy. kernels/README.md gives each number's source.
TARGETS = {
    "sm_80": dict(part="A100 SXM", mma=0.5, dense=0.5, smem_sm=164 * 1024, smem_block=163 * 1024,
                  threads_sm=2048, blocks_sm=32),
    "sm_86": dict(part="RTX A6000 (GA102)", mma=0.25, dense=0.25, smem_sm=100 * 1024, smem_block=99 * 1024,
                  threads_sm=1536, blocks_sm=16),
    "sm_89": dict(part="L40S (AD102)", mma=0.25, dense=0.25, smem_sm=100 * 1024, smem_block=99 * 1024,
                  threads_sm=1536, blocks_sm=24),
    "sm_90a": dict(part="H100 SXM", mma=2 / 3, dense=1.0, smem_sm=228 * 1024, smem_block=227 * 1024,
                   threads_sm=2048, blocks_sm=32),
}
ISSUE_PER_SM = 4        # one instruction per clock per scheduler, four schedulers
SMEM_BYTES_PER_CLK = 128  # 32 banks x 4 bytes per SM per clock
REGS_SM = 65536
SMEM_RESERVED = 1024    # per block, reserved by the CUDA runtime on sm_80+

# Goals of [gpu-conv-speed] for the large-tile mma.sync variants.
GOAL_ISSUE_PER_HMMA = 2.5
GOAL_SMEM_CEILING = 0.80
LARGE_TILE = re.compile(r"^conv_tc_(128x128|256x128)_")
# Dynamic shared memory a kernel is launched with (ptxas reports static
# only): kernels/conv.cu CONV_TC_256_SMEM, src/cuda/kernels.rs TC8_SHARED.
# kernels/attention.cu ATT_SHARED(D, MT): Q (64 MT rows) and two stages of K
# and V (64 rows each), rows of D + 8; MT 2 for the _x2 entries.
DYNAMIC_SMEM = [(re.compile(r"^conv_tc_256x128_"), 3 * (256 + 128) * 64 + 128)] + [
    (re.compile(rf"^attention_bf16_d{d}{sfx}$"), (64 * mt + 4 * 64) * (d + 8) * 2)
    for d in (16, 32, 64, 96, 128) for sfx, mt in (("(_bias)?", 1), ("_x2", 2))] + sass_hopper.DYNAMIC_SMEM
# ... and for the narrow-group kernels: within NARROW_FACTOR of the large
# tile (same target) per useful multiply-add, in issued instructions and in
# the ceiling. A kernel's useful share is its worst case over the layers it
# takes (teacher/gpu/conv.rs `grouped_fits`): at stride 1, Ng 8, where an
# m16 holds two groups and half of each block-diagonal A fragment is zeros;
# at stride 2 (Ng 16 and 32 only) every multiply-add is useful.
NARROW_FACTOR = 2.0
NARROW = [(re.compile(r"^conv_grouped_s1_"), 0.5), (re.compile(r"^conv_grouped_s2_"), 1.0)]
# [gpu-transformer]'s goal for fused attention, softmax included: issued
# instructions per product HMMA (QK^T and PV) on the key-tile loop's common
# path (`attention_figure`), gating --check for the kernels that take head
# dims 64 (ViT-B, DeiT: the _x2 blocks past 64 tokens), 96 and 128 without a
# bias. Reported, not gating: the bias variants (Swin's are at head dim 32)
# and the 64-row d64 blocks (sequences of at most 64 tokens); at head dims
# 16 and 32 the per-score softmax work meets a half or a quarter of the
# HMMA of head dim 64.
GOAL_ATTENTION_ISSUE_PER_HMMA = 3.5
ATTENTION_GOAL = re.compile(r"^attention_bf16_(d64_x2|d96|d128)$")
ATTENTION_OPEN = re.compile(r"^attention_bf16_(d64|d(64|96|128)_bias)$")


def useful_share(kernel):
    """The narrow-group kernel's worst-case useful share of its HMMA, or None."""
    return next((u for rx, u in NARROW if rx.match(kernel)), None)


def find_tools():
    """(nvcc, cuobjdump): NVCC / CUOBJDUMP, else the pinned ones setup-cuda.sh installs side by side."""
    nvcc = os.environ.get("NVCC")
    if not nvcc:
        try:
            nvcc = subprocess.run([str(ROOT / "scripts/setup-cuda.sh")], check=True, capture_output=True,
                                  text=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as e:
            sys.exit(f"sass_report: cannot set up the pinned CUDA tools (scripts/setup-cuda.sh): {e}")
    cuobjdump = os.environ.get("CUOBJDUMP") or str(Path(nvcc).parent / "cuobjdump")
    if not Path(cuobjdump).exists():
        sys.exit(f"sass_report: cuobjdump not found beside {nvcc}; run scripts/setup-cuda.sh (it installs "
                 f"cuobjdump and nvdisasm) or set CUOBJDUMP")
    return nvcc, cuobjdump


def compile_cubin(nvcc, family, arch, out_dir):
    cubin = Path(out_dir) / f"{family}.{arch}.cubin"
    # build.rs's flags (compile_one), one target at a time.
    cmd = [nvcc, "--cubin", f"-gencode=arch=compute_{arch[3:]},code={arch}", "-O3", "-std=c++17",
           "-Xptxas", "-v", "-lineinfo", "-I", str(ROOT / "kernels"), "-o", str(cubin),
           str(ROOT / "kernels" / f"{family}.cu")]
    if os.environ.get("NVCC_CCBIN"):
        cmd += ["-ccbin", os.environ["NVCC_CCBIN"]]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"sass_report: nvcc failed for {arch}:\n{r.stderr}")
    return cubin, r.stderr


def ptxas_resources(text):
    """entry -> dict(regs, smem, stack, spill) from ptxas -v."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.search(r"Function properties for (\w+)", line)
        if m:
            cur = out.setdefault(m.group(1), dict(regs=0, smem=0, stack=0, spill=0))
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            cur["stack"], cur["spill"] = int(m.group(1)), int(m.group(2)) + int(m.group(3))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            cur["smem"] = int(s.group(1)) if s else 0
    return out


def max_threads(cuobjdump, cubin):
    """entry -> threads per block from __launch_bounds__ (EIATTR_MAX_THREADS)."""
    text = subprocess.run([cuobjdump, "-elf", str(cubin)], check=True, capture_output=True, text=True).stdout
    out, cur, want = {}, None, False
    for line in text.splitlines():
        m = re.match(r"^\.nv\.info\.(\w+)", line)
        if m:
            cur = m.group(1)
            continue
        if "EIATTR_MAX_THREADS" in line:
            want = True
            continue
        if want and line.strip().startswith("Value:") and cur:
            vals = [int(v, 16) for v in line.split(":", 1)[1].split()]
            n = 1
            for v in vals:
                n *= v
            out[cur] = n
            want = False
    return out


INSN = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?);")


def disassemble(cuobjdump, cubin):
    """entry -> [(address, opcode, text)] from cuobjdump -sass."""
    text = subprocess.run([cuobjdump, "-sass", str(cubin)], check=True, capture_output=True, text=True).stdout
    funcs, cur = {}, None
    for line in text.splitlines():
        m = re.search(r"Function : (\w+)", line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = INSN.search(line)
        if m and cur is not None:
            body = m.group(2).strip()
            op = re.sub(r"^@!?U?P\w+\s+", "", body).split()[0]
            cur.append((int(m.group(1), 16), op, body))
    return funcs


def loops(insns):
    """(start, end) address ranges of backward branches: a loop each (not
    the branch-to-itself ptxas puts after the last EXIT)."""
    out = []
    for addr, op, body in insns:
        if op.startswith("BRA"):
            m = re.search(r"(0x[0-9a-f]+)\s*$", body)
            if m and int(m.group(1), 16) < addr:
                out.append((int(m.group(1), 16), addr))
    return out


LANE_BYTES = {"U8": 1, "S8": 1, "U16": 2, "S16": 2, "64": 8, "128": 16}


def lane_bytes(op):
    """Bytes per lane of a load or store, by its width suffix (none: 32 bits)."""
    return LANE_BYTES.get(op.split(".")[-1], 4)


def smem_bytes(op, text):
    """(read, written) shared-memory bytes of one warp's instruction.

    LDSM.16.M88{,.2,.4} is ldmatrix .x1/.x2/.x4: 128 bytes a matrix. LDGSTS
    (cp.async) and STS write, LDS reads. `@!PT` never executes (ptxas pads
    with such LDS): no bytes, though it still takes an issue slot."""
    if text.startswith("@!PT "):
        return 0, 0
    if op.startswith("LDSM"):
        last = op.split(".")[-1]
        return 128 * (int(last) if last in ("2", "4") else 1), 0
    if op.startswith("LDS"):
        return 32 * lane_bytes(op), 0
    if op.startswith("LDGSTS") or op.startswith("STS"):
        return 0, 32 * lane_bytes(op)
    return 0, 0


def vote_guarded(body, hi):
    """Address ranges of the main loop skipped by a branch on a warp vote
    (`VOTE.ANY P` then `@!P BRA` forward within the loop): attention's lazy
    rescale, which a warp runs only when one of its rows' max moved by more
    than the lazy margin (kernels/attention.cu)."""
    out = []
    for k, (addr, op, text) in enumerate(body):
        if not op.startswith("VOTE.ANY"):
            continue
        pred = text.split()[-1].rstrip(";")
        for a2, op2, text2 in body[k + 1:k + 4]:
            m = re.match(rf"@!{re.escape(pred)}\s+BRA\S*\s+(0x[0-9a-f]+)", text2)
            if op2.startswith("BRA") and m and a2 < int(m.group(1), 16) <= hi:
                out.append((a2, int(m.group(1), 16)))
                break
    return out


# Per key tile and m16 tile of attention.cu: QK^T D/2 HMMA, PV D/2, and 4
# for the row sums (P times a column of ones, in place of an add a key).
def attention_product_share(name):
    m = re.match(r"^attention_bf16_d(\d+)", name)
    return int(m.group(1)) / (int(m.group(1)) + 4) if m else None


def analyse(name, insns, res, threads, arch):
    t = TARGETS[arch]
    issued = [i for i in insns if i[1] != "NOP"]
    hmma_total = sum(1 for i in issued if i[1].startswith("HMMA"))
    stg = {}
    for _, op, _ in issued:
        if op.startswith("STG"):
            stg[op] = stg.get(op, 0) + 1
    row = dict(kernel=name, arch=arch, regs=res.get("regs"), smem_static=res.get("smem"),
               stack=res.get("stack"), spill_bytes=res.get("spill"), threads=threads,
               hmma_in_kernel=hmma_total, global_stores=stg)
    # Occupancy: registers are allocated per warp in units of 256.
    warps = max(1, (threads or 128) // 32)
    regs_warp = -(-max(res.get("regs", 0), 1) * 32 // 256) * 256
    by_regs = (REGS_SM // regs_warp) // warps
    dynamic = next((b for rx, b in DYNAMIC_SMEM if rx.match(name)), 0)
    row.update(smem_dynamic=dynamic)
    smem = res.get("smem", 0) + dynamic + SMEM_RESERVED
    by_smem = t["smem_sm"] // smem if smem else t["blocks_sm"]
    by_threads = t["threads_sm"] // (warps * 32)
    blocks = min(by_regs, by_smem, by_threads, t["blocks_sm"])
    row.update(blocks_per_sm=blocks, warps_per_sm=blocks * warps,
               occupancy=round(blocks * warps * 32 / t["threads_sm"], 3))
    row.update(wgmma_loop=sass_hopper.analyse(name, issued, loops(issued)))
    best = None
    for lo, hi in loops(issued):
        body = [i for i in issued if lo <= i[0] <= hi]
        h = sum(1 for i in body if i[1].startswith("HMMA"))
        if h and (best is None or h > best[2]):
            best = (lo, hi, h, body)
    if best is None:
        row.update(main_loop=None)
        return row
    lo, hi, h, body = best
    inner = [l for l in loops(issued) if lo <= l[0] and l[1] < hi and l != (lo, hi)]
    n = len(body)
    moved = [smem_bytes(op, text) for _, op, text in body]
    reads, writes = sum(r for r, _ in moved), sum(w for _, w in moved)
    per = n / h
    smem_per = (reads + writes) / h
    issue_ceiling = min(1.0, ISSUE_PER_SM / per / t["mma"])
    smem_ceiling = min(1.0, SMEM_BYTES_PER_CLK / smem_per / t["mma"]) if smem_per else 1.0
    frac = t["mma"] / t["dense"]
    kinds = {}
    for _, op, _ in body:
        k = op.split(".")[0]
        kinds[k] = kinds.get(k, 0) + 1
    # The whole kernel once, its main loop taken `trips` times: for kernels
    # whose other loops are unrolled (conv_grouped) this is a block's exact
    # issue count, the tile loads and the epilogue included.
    outside = len(issued) - n
    whole = {str(trips): round((outside + trips * n) / (trips * h), 3) for trips in (1, 2)} \
        if len(loops(issued)) == 1 else None
    guarded = vote_guarded(body, hi)
    hot = [i for i in body if not any(g0 < i[0] < g1 for g0, g1 in guarded)]
    common = None
    if guarded:
        share = attention_product_share(name) or 1.0
        h_hot = sum(1 for i in hot if i[1].startswith("HMMA"))
        common = dict(instructions=len(hot), hmma=h_hot, skipped_instructions=n - len(hot),
                      skipped=[[hex(a), hex(b)] for a, b in guarded],
                      issued_per_hmma=round(len(hot) / h_hot, 3),
                      product_hmma=round(h_hot * share),
                      issued_per_product_hmma=round(len(hot) / (h_hot * share), 3))
    row.update(main_loop=dict(
        address=[hex(lo), hex(hi)], instructions=n, hmma=h, issued_per_hmma=round(per, 3),
        common_path=common,
        whole_kernel_issued_per_hmma_by_trips=whole,
        smem_read_bytes_per_hmma=round(reads / h, 1), smem_write_bytes_per_hmma=round(writes / h, 1),
        inner_loops=len(inner),
        issue_ceiling_of_mma_peak=round(issue_ceiling, 3), smem_ceiling_of_mma_peak=round(smem_ceiling, 3),
        ceiling_of_dense_peak=round(min(issue_ceiling, smem_ceiling) * frac, 3),
        opcodes=dict(sorted(kinds.items(), key=lambda kv: -kv[1]))))
    return row


def report_arch(nvcc, cuobjdump, family, arch, tmp):
    cubin, ptxas = compile_cubin(nvcc, family, arch, tmp)
    res = ptxas_resources(ptxas)
    threads = max_threads(cuobjdump, cubin)
    funcs = disassemble(cuobjdump, cubin)
    return [analyse(name, insns, res.get(name, {}), threads.get(name), arch) for name, insns in sorted(funcs.items())]


def annotate_narrow(rows):
    """Adds to each narrow-group kernel's main loop its useful share, its
    figures per useful HMMA and the large tile's (worst variant, same
    target) it is held against."""
    for r in rows:
        share, ml = useful_share(r["kernel"]), r["main_loop"]
        ref = [q["main_loop"] for q in rows if LARGE_TILE.match(q["kernel"]) and q["arch"] == r["arch"]
               and q["main_loop"]]
        if share is None or ml is None or not ref:
            continue
        ml.update(useful_share=share,
                  issued_per_useful_hmma=round(ml["issued_per_hmma"] / share, 3),
                  useful_ceiling_of_mma_peak=round(
                      min(ml["issue_ceiling_of_mma_peak"], ml["smem_ceiling_of_mma_peak"]) * share, 3),
                  large_tile_reference=dict(
                      issued_per_hmma=max(q["issued_per_hmma"] for q in ref),
                      ceiling_of_mma_peak=min(min(q["issue_ceiling_of_mma_peak"], q["smem_ceiling_of_mma_peak"])
                                              for q in ref)))


def check(rows):
    """Goals of [gpu-conv-speed] on the large-tile variants; messages for each miss."""
    bad = []
    for r in rows:
        if not LARGE_TILE.match(r["kernel"]):
            continue
        ml = r["main_loop"]
        if ml is None:
            bad.append(f"{r['arch']} {r['kernel']}: no main loop with HMMA found")
            continue
        if ml["issued_per_hmma"] > GOAL_ISSUE_PER_HMMA:
            bad.append(f"{r['arch']} {r['kernel']}: {ml['issued_per_hmma']} issued instructions per HMMA "
                       f"(goal <= {GOAL_ISSUE_PER_HMMA})")
        if ml["smem_ceiling_of_mma_peak"] < GOAL_SMEM_CEILING:
            bad.append(f"{r['arch']} {r['kernel']}: shared-bandwidth ceiling {ml['smem_ceiling_of_mma_peak']:.0%} "
                       f"of the mma.sync peak (goal >= {GOAL_SMEM_CEILING:.0%})")
        if r["spill_bytes"]:
            bad.append(f"{r['arch']} {r['kernel']}: {r['spill_bytes']} bytes of spills")
    if not any(LARGE_TILE.match(r["kernel"]) for r in rows):
        bad.append("no large-tile (conv_tc_128x128_*) variant in the report")
    bad += attention_misses(rows, ATTENTION_GOAL)
    if any(r["kernel"].startswith("conv_sm90") for r in rows):
        bad += sass_hopper.misses(rows, sass_hopper.GOAL)
    for r in rows:
        ml = r["main_loop"]
        if useful_share(r["kernel"]) is None:
            continue
        if ml is None or "useful_share" not in ml:
            bad.append(f"{r['arch']} {r['kernel']}: no main loop, or no large-tile variant to compare with")
            continue
        ref = ml["large_tile_reference"]
        if ml["issued_per_useful_hmma"] > NARROW_FACTOR * ref["issued_per_hmma"]:
            bad.append(f"{r['arch']} {r['kernel']}: {ml['issued_per_useful_hmma']:.2f} issued instructions per "
                       f"useful HMMA (goal <= {NARROW_FACTOR:g} x {ref['issued_per_hmma']})")
        if ml["useful_ceiling_of_mma_peak"] < ref["ceiling_of_mma_peak"] / NARROW_FACTOR - 1e-9:
            bad.append(f"{r['arch']} {r['kernel']}: useful ceiling {ml['useful_ceiling_of_mma_peak']:.0%} of the "
                       f"mma.sync peak (goal >= {ref['ceiling_of_mma_peak']:.0%} / {NARROW_FACTOR:g})")
        if r["spill_bytes"]:
            bad.append(f"{r['arch']} {r['kernel']}: {r['spill_bytes']} bytes of spills")
    return bad


def attention_figure(ml):
    """Attention's goal figure: issued instructions per product HMMA (QK^T
    and PV, not the row sums' ones column) on the loop's common path (the
    lazy rescale skipped); the whole loop when it has no such branch."""
    c = ml.get("common_path")
    return c["issued_per_product_hmma"] if c else ml["issued_per_hmma"]


def attention_misses(rows, pattern):
    out = []
    for r in rows:
        ml = r["main_loop"]
        if not pattern.match(r["kernel"]):
            continue
        if ml is None:
            out.append(f"{r['arch']} {r['kernel']}: no main loop with HMMA found")
        elif attention_figure(ml) > GOAL_ATTENTION_ISSUE_PER_HMMA:
            out.append(f"{r['arch']} {r['kernel']}: {attention_figure(ml)} issued instructions per product HMMA "
                       f"on the common path (goal <= {GOAL_ATTENTION_ISSUE_PER_HMMA})")
        elif r["spill_bytes"] or r["stack"]:
            out.append(f"{r['arch']} {r['kernel']}: {r['spill_bytes']} bytes of spills, {r['stack']} of stack")
    return out


def open_goals(rows):
    """Goals reported but not gating --check: attention's bias variants and
    its 64-row d64 blocks."""
    return attention_misses(rows, ATTENTION_OPEN) + sass_hopper.misses(rows, sass_hopper.OPEN)


def table(rows):
    head = f"{'arch':7} {'kernel':28} {'regs':>4} {'smem':>6} {'occ':>5} {'instr/HMMA':>10} {'smemB/HMMA':>10} " \
           f"{'issue%':>6} {'smem%':>6} {'dense%':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        ml = r["main_loop"]
        loop = (f"{ml['issued_per_hmma']:>10.2f} "
                f"{ml['smem_read_bytes_per_hmma'] + ml['smem_write_bytes_per_hmma']:>10.0f} "
                f"{ml['issue_ceiling_of_mma_peak']:>6.0%} {ml['smem_ceiling_of_mma_peak']:>6.0%} "
                f"{ml['ceiling_of_dense_peak']:>6.0%}" + (" *" if ml["inner_loops"] else "")) if ml else \
            f"{'(no HMMA loop)':>10}"
        lines.append(f"{r['arch']:7} {r['kernel']:28} {r['regs']:>4} {r['smem_static'] + r['smem_dynamic']:>6} "
                     f"{r['occupancy']:>5.0%} {loop}")
    lines.append("issue% / smem%: ceilings as a share of the target's mma.sync peak; dense%: the lower of the two "
                 "as a share of the dense bf16 peak (wgmma on sm_90a). * the main loop holds an inner loop, "
                 "counted once. smem: static + dynamic bytes a block.")
    narrow = [r for r in rows if r["main_loop"] and "useful_share" in r["main_loop"]]
    if narrow:
        lines += ["", f"{'arch':7} {'narrow-group kernel':28} {'useful':>6} {'instr/useful':>12} {'vs large':>8} "
                      f"{'useful%':>7} {'vs large':>8} {'whole kernel instr/HMMA (1, 2 chunks)':>38}"]
        for r in narrow:
            ml, ref = r["main_loop"], r["main_loop"]["large_tile_reference"]
            whole = ml["whole_kernel_issued_per_hmma_by_trips"] or {}
            lines.append(f"{r['arch']:7} {r['kernel']:28} {ml['useful_share']:>6.0%} "
                         f"{ml['issued_per_useful_hmma']:>12.2f} {ml['issued_per_useful_hmma'] / ref['issued_per_hmma']:>7.2f}x "
                         f"{ml['useful_ceiling_of_mma_peak']:>7.0%} "
                         f"{ref['ceiling_of_mma_peak'] / max(ml['useful_ceiling_of_mma_peak'], 1e-9):>7.2f}x "
                         f"{whole.get('1', float('nan')):>30.2f} {whole.get('2', float('nan')):>7.2f}")
        lines.append("useful: the worst-case share of the HMMA's multiply-adds that are not block-diagonal zeros; "
                     "vs large: against the worst conv_tc_128x128 variant on the same target (goal <= 2x both "
                     "ways); whole kernel: every instruction of a block (tile load, epilogue) per HMMA, the main "
                     "loop run once (Ng 8, 16) or twice (Ng 32).")
    att = [r for r in rows if r["main_loop"] and r["main_loop"].get("common_path")]
    if att:
        lines += ["", f"{'arch':7} {'attention kernel':28} {'common/product':>14} {'whole/product':>13} "
                      f"{'rebase instr':>12}"]
        for r in att:
            ml, c = r["main_loop"], r["main_loop"]["common_path"]
            lines.append(f"{r['arch']:7} {r['kernel']:28} {c['issued_per_product_hmma']:>14.2f} "
                         f"{ml['instructions'] / c['product_hmma']:>13.2f} {c['skipped_instructions']:>12}")
        lines.append("common/product: issued instructions per product HMMA (QK^T, PV; not the row sums' ones "
                     "column) when no row of the warp rebases (the goal's figure); whole/product: every "
                     "instruction of the loop, the rebase block included; rebase instr: that block's size.")
    lines += sass_hopper.table(rows)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="conv,conv_grouped,attention,conv_sm90", help="comma-separated kernel families")
    ap.add_argument("--arch", default=",".join(ARCHS), help="comma-separated targets (default: all)")
    ap.add_argument("--json", help="write the full report here")
    ap.add_argument("--check", action="store_true", help="exit 1 when a large-tile variant misses a goal")
    a = ap.parse_args()
    archs = [s.strip() for s in a.arch.split(",") if s.strip()]
    for arch in archs:
        if arch not in TARGETS:
            sys.exit(f"sass_report: unknown target {arch} (known: {', '.join(TARGETS)})")
    nvcc, cuobjdump = find_tools()
    os.environ["PATH"] = str(Path(cuobjdump).parent) + os.pathsep + os.environ.get("PATH", "")
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(len(archs)) as pool:
        families = [f.strip() for f in a.family.split(",") if f.strip()]
        jobs = [(f, arch) for arch in archs for f in families]
        parts = list(pool.map(lambda j: report_arch(nvcc, cuobjdump, j[0], j[1], tmp), jobs))
    rows = [r for part in parts for r in part]
    annotate_narrow(rows)
    print(table(rows))
    if a.json:
        version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "kernels"], capture_output=True,
                               text=True).stdout.strip()
        doc = dict(kind="static-sass-report", families=families, commit=commit + ("-dirty" if dirty else ""),
                   nvcc=version, model=dict(targets=TARGETS, issue_per_sm_per_clk=ISSUE_PER_SM,
                                            smem_bytes_per_sm_per_clk=SMEM_BYTES_PER_CLK,
                                            see="kernels/README.md, Static performance model"),
                   goals=dict(issued_per_hmma=GOAL_ISSUE_PER_HMMA, smem_ceiling_of_mma_peak=GOAL_SMEM_CEILING,
                              attention=dict(issued_per_hmma=GOAL_ATTENTION_ISSUE_PER_HMMA,
                                             applies_to=ATTENTION_GOAL.pattern, open=open_goals(rows)),
                              applies_to=LARGE_TILE.pattern,
                              narrow_groups=dict(factor=NARROW_FACTOR,
                                                 useful_share={rx.pattern: u for rx, u in NARROW})),
                   kernels=rows)
        Path(a.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {a.json}")
    for g in open_goals(rows):
        print(f"OPEN GOAL (not checked): {g}")
    if a.check:
        bad = check(rows)
        for b in bad:
            print(f"GOAL MISSED: {b}", file=sys.stderr)
        if bad:
            sys.exit(1)
        print("static goals met: every large-tile variant at <= "
              f"{GOAL_ISSUE_PER_HMMA} issued instructions per HMMA and a shared-bandwidth ceiling >= "
              f"{GOAL_SMEM_CEILING:.0%} of the mma.sync peak; every narrow-group kernel within "
              f"{NARROW_FACTOR:g}x of them per useful HMMA; attention (d64_x2, d96, d128) at <= "
              f"{GOAL_ATTENTION_ISSUE_PER_HMMA} per product HMMA on its common path; every wgmma tile "
              f"(conv_sm90 128x128 and 128x256; conv_sm90g 128x192, 128x256, 256x128, 256x96) at <= "
              f"{sass_hopper.GOAL_NON_MMA_SHARE:.0%} of their consumer loop's issue slots in non-MMA instructions, "
              f"the gather kernels' schedulers at <= {sass_hopper.GOAL_SCHEDULER_SHARE:.0%} of theirs; no spills")


if __name__ == "__main__":
    main()
