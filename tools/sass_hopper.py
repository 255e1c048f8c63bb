"""The wgmma (HGMMA) part of tools/sass_report.py: the consumer loop of a
warp-specialized Hopper kernel (kernels/conv_sm90.cu), read off its SASS.

An HGMMA.64xNx16 is one issued instruction per warp of the warpgroup that
keeps the SM's tensor cores busy for N/2 clocks at the dense bf16 peak
(64 N 16 multiply-adds over 2048 a clock per SM: H100 SXM, 989 TFLOPS at
132 SMs and 1.83 GHz), during which each of the four schedulers could issue
N/2 other instructions. So the figure of [gpu-hopper]'s goal, "non-MMA
instructions as a share of issue slots in the consumer loop", is the loop's
other issued instructions over the tensor clocks of its HGMMA (per warp: the
two consumer warpgroups share the schedulers and the tensor cores alike, so
the ratio is the same for one or both). At or under 10% the issue slots the
loop needs fit in the time its MMAs take with room to spare. The raw
instruction share (other / all issued) is given beside it.

The operand traffic: an HGMMA with both operands in shared memory reads
64 x 16 of A and N x 16 of B, bf16, over its N/2 clocks; against 128 bytes
a clock per SM that is the shared-bandwidth ceiling (the TMA's writes of the
same bytes are given per tensor clock too, not in the ceiling: whether they
share the read path is for a device to show). Stages and bytes a stage are
the kernel's own (SASS does not show them): `RING`.
"""
import re

GOAL_NON_MMA_SHARE = 0.10
# Gating --check: every GEMM tile (128x256 where Cout % 256 == 0, else
# 128x128) and the gather tiles of 96 channels and more (ResNeXt-101
# 32x{24,48}d's groups of 96, 192 and 384, ungrouped 3x3s). Open (reported,
# not gating): the narrow gather tiles (groups of 48 and 64), whose wgmmas
# are too short for the loop's fixed cost. A gather kernel also misses when
# a scheduler's whole issue load (producer and consumers) exceeds its slots.
GOAL = re.compile(r"^conv_sm90_128x(128|256)_|^conv_sm90g_(128x192|128x256|256x128|256x96)_")
OPEN = re.compile(r"^conv_sm90g_256x(48|64)_")
GOAL_SCHEDULER_SHARE = 1.0
SMEM_BYTES_PER_CLK = 128
# kernels/conv_sm90.cu: SM90_STAGES stages of (BM + BN) rows x 128 bytes,
# and 1 KB to align the ring (src/cuda/kernels.rs `conv_sm90::shared_bytes`,
# `gather_shared_bytes`).
GATHER_TILES = [(256, 48), (256, 64), (256, 96), (256, 128), (128, 192), (128, 256)]
RING = {rf"^conv_sm90_128x{bn}_": dict(stages=4, stage_bytes=(128 + bn) * 128, bm=128) for bn in (128, 256)}
RING.update({rf"^conv_sm90g_{bm}x{bn}_": dict(stages=4, stage_bytes=(bm + bn) * 128, bm=bm)
             for bm, bn in GATHER_TILES})
DYNAMIC_SMEM = [(re.compile(rx), r["stages"] * r["stage_bytes"] + 1024) for rx, r in RING.items()]
HGMMA = re.compile(r"^HGMMA\.64x(\d+)x16")


def analyse(name, issued, loops):
    """The loop with the most HGMMA (the consumer's main loop), or None when
    the kernel has no HGMMA (the stub of a target other than sm_90a)."""
    # Only loops closed by a predicated branch: ptxas moves an mbarrier
    # wait's retry out of line, after the EXIT, and returns into the loop by
    # an unconditional backward BRA that would otherwise span both
    # consumers' loops.
    closing = {at: text for at, _, text in issued}
    loops = [(lo, hi) for lo, hi in loops if closing.get(hi, "").startswith("@")]
    # The innermost loops with HGMMA: a persistent kernel's tile loop holds
    # the k-loops (the whole rounds', and the few k-tiles before a tile's
    # first round) and the epilogue. Of those, the one with the most HGMMA
    # (the rounds'), the worst share among equals.
    def holding(pred):
        return [(lo, hi) for lo, hi in loops if any(pred(op) for at, op, _ in issued if lo <= at <= hi)]

    def innermost(ls):
        return [l for l in ls if not any(o != l and l[0] <= o[0] and o[1] <= l[1] for o in ls)]

    best = None
    for lo, hi in innermost(holding(HGMMA.match)):
        body = [i for i in issued if lo <= i[0] <= hi]
        h = [int(HGMMA.match(op).group(1)) for _, op, _ in body if HGMMA.match(op)]
        key = (len(h), (len(body) - len(h)) / sum(n / 2 for n in h))
        if best is None or key > best[0]:
            best = (key, lo, hi, h, body)
    if best is None:
        return None
    _, lo, hi, ns, body = best
    tensor_clocks = sum(n / 2 for n in ns)
    other = len(body) - len(ns)
    operand_bytes = sum((64 + n) * 16 * 2 for n in ns)
    # The producer's k-loop: the innermost holding a k-tile's loads (the
    # gather's cp.async, else both TMA loads: not the one-load retry loops
    # ptxas wraps a TMA issue in, BRA.U.ANY).
    def count(lo, hi, prefix):
        return sum(1 for at, op, _ in issued if lo <= at <= hi and op.startswith(prefix))

    gathering = any(op.startswith("LDGSTS") for _, op, _ in issued)
    feeding = [(a, b) for a, b in loops
               if (count(a, b, "LDGSTS") if gathering else count(a, b, "UTMALDG") >= 2)]
    producer = max(([i for i in issued if a <= i[0] <= b] for a, b in innermost(feeding)), key=len, default=[])
    ring = next((r for rx, r in RING.items() if re.match(rx, name)), None)
    # k-tiles a trip of each loop: the consumer's holds 4 k16 steps of MT
    # wgmmas per k-tile; the producer's, 2 TMA loads (x, w) or, gathering,
    # BM/16 cp.async (LDGSTS) and one TMA load per k-tile.
    mt = (ring or {}).get("bm", 128) // 128
    consumer_ktiles = len(ns) / (4 * mt)
    gathers = sum(1 for _, op, _ in producer if op.startswith("LDGSTS"))
    tmas = sum(1 for _, op, _ in producer if op.startswith("UTMALDG"))
    producer_ktiles = gathers / (16 * mt) if gathers else tmas / 2
    # The SM's tensor clocks a k-tile takes (both consumer warpgroups), the
    # issue slots each scheduler has meanwhile; a scheduler hosts one warp
    # of each warpgroup: a producer warp and two consumer warps.
    ktile_clocks = 2 * tensor_clocks / consumer_ktiles
    producer_per_ktile = len(producer) / producer_ktiles if producer_ktiles else 0
    kinds = {}
    for _, op, _ in body:
        if not HGMMA.match(op):
            k = op.split(".")[0]
            kinds[k] = kinds.get(k, 0) + 1
    out = dict(address=[hex(lo), hex(hi)], instructions=len(body), hgmma=len(ns), hgmma_n=sorted(set(ns)),
               tensor_clocks=tensor_clocks, non_mma=other,
               non_mma_share_of_issue_slots=round(other / tensor_clocks, 4),
               non_mma_share_of_instructions=round(other / len(body), 3),
               issue_ceiling=round(min(1.0, tensor_clocks / len(body)), 3),
               smem_operand_bytes_per_clk=round(operand_bytes / tensor_clocks, 1),
               smem_ceiling=round(min(1.0, SMEM_BYTES_PER_CLK * tensor_clocks / operand_bytes), 3),
               producer_loop_instructions=len(producer),
               producer_share_of_issue_slots=round(producer_per_ktile / ktile_clocks, 4),
               scheduler_share_of_issue_slots=round((2 * other / consumer_ktiles + producer_per_ktile)
                                                    / ktile_clocks, 4),
               other_opcodes=dict(sorted(kinds.items(), key=lambda kv: -kv[1])))
    if ring:
        out.update(stages=ring["stages"], smem_per_stage=ring["stage_bytes"])
    return out


def misses(rows, pattern):
    """The wgmma goal's misses among the sm_90a kernels matching `pattern`."""
    out = []
    for r in rows:
        if r["arch"] != "sm_90a" or not pattern.match(r["kernel"]):
            continue
        w = r.get("wgmma_loop")
        if w is None:
            out.append(f"{r['arch']} {r['kernel']}: no loop with HGMMA found")
        elif w["non_mma_share_of_issue_slots"] > GOAL_NON_MMA_SHARE:
            out.append(f"{r['arch']} {r['kernel']}: non-MMA instructions at "
                       f"{w['non_mma_share_of_issue_slots']:.1%} of the consumer loop's issue slots "
                       f"(goal <= {GOAL_NON_MMA_SHARE:.0%})")
        if w is not None and w["scheduler_share_of_issue_slots"] > GOAL_SCHEDULER_SHARE:
            out.append(f"{r['arch']} {r['kernel']}: a scheduler's issue load (producer and consumers) at "
                       f"{w['scheduler_share_of_issue_slots']:.1%} of its slots (goal <= {GOAL_SCHEDULER_SHARE:.0%})")
        if r["spill_bytes"]:
            out.append(f"{r['arch']} {r['kernel']}: {r['spill_bytes']} bytes of spills")
    return out


def table(rows):
    rows = [r for r in rows if r.get("wgmma_loop")]
    if not rows:
        return []
    lines = ["", f"{'arch':7} {'wgmma kernel':28} {'regs':>4} {'smem':>6} {'occ':>5} {'stages':>6} {'B/stage':>7} "
                 f"{'HGMMA':>5} {'other':>5} {'other/slots':>11} {'other/instr':>11} {'smemB/clk':>9} "
                 f"{'producer':>8} {'prod/slots':>10} {'sched/slots':>11}"]
    for r in rows:
        w = r["wgmma_loop"]
        lines.append(f"{r['arch']:7} {r['kernel']:28} {r['regs']:>4} {r['smem_static'] + r['smem_dynamic']:>6} "
                     f"{r['occupancy']:>5.0%} {w.get('stages', '?'):>6} {w.get('smem_per_stage', '?'):>7} "
                     f"{w['hgmma']:>5} {w['non_mma']:>5} {w['non_mma_share_of_issue_slots']:>11.1%} "
                     f"{w['non_mma_share_of_instructions']:>11.0%} {w['smem_operand_bytes_per_clk']:>9.0f} "
                     f"{w['producer_loop_instructions']:>8} {w['producer_share_of_issue_slots']:>10.1%} "
                     f"{w['scheduler_share_of_issue_slots']:>11.1%}")
    lines.append("other/slots: the consumer loop's non-HGMMA instructions over its HGMMA's tensor clocks "
                 f"(N/2 each), the share of issue slots they take (goal <= {GOAL_NON_MMA_SHARE:.0%}); "
                 "other/instr: over all its instructions; smemB/clk: operand bytes the HGMMA read per "
                 f"tensor clock (of {SMEM_BYTES_PER_CLK}); producer: the TMA (or gather) loop's instructions; "
                 "prod/slots: its instructions a k-tile over the SM's tensor clocks a k-tile (both consumer "
                 "warpgroups); sched/slots: a scheduler's whole issue load (its producer warp and two consumer "
                 "warps) over those clocks.")
    return lines
