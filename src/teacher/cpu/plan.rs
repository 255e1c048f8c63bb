//! Memory planned once per prepared graph (one batch size): where every
//! value lives, found from the values' lifetimes. Float intermediates share
//! one arena, placed greedily by size (largest first, each at the lowest
//! offset free over its whole lifetime); reshapes alias their input; the
//! few values of other types (int64 shape arithmetic left at run time) are
//! made on the heap. `exec` runs the plan.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::attention;
use crate::teacher::arena::{Lifetime, place};
use crate::teacher::graph::{Graph, Op, ValueId};
use crate::teacher::tensor::{DType, numel};

/// Arena offsets are multiples of this many floats (64 bytes).
const ALIGN: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// An initializer or folded value: read from the graph.
    Const,
    /// The k-th graph input.
    Input(usize),
    Arena(Range<usize>),
    /// The same elements as another value (its root), another shape.
    Alias(ValueId),
    /// Made at run time as a tensor (non-float, or not sized ahead).
    Heap,
}

/// A graph with its memory plan; runs with no per-op allocation of tensor
/// data once its arena exists (ops outside the planned set fall back to
/// the allocating kernels).
pub struct Plan {
    pub graph: Arc<Graph>,
    pub(crate) slots: Vec<Slot>,
    /// Per node: arena space for its temporaries (attention's scores).
    pub(crate) scratch: Vec<Option<Range<usize>>>,
    /// Per value: the last node reading it (`usize::MAX` for graph outputs).
    pub(crate) last_use: Vec<usize>,
    pub arena_len: usize,
    pub(crate) arena: Mutex<Vec<f32>>,
}

/// Ops whose output is their first input's elements under another shape.
pub(crate) fn is_alias(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Unary(crate::teacher::graph::Unary::Identity)
    )
}

struct Item {
    value: Option<ValueId>,
    node: Option<usize>,
    size: usize,
    live: (usize, usize),
}

impl Plan {
    pub fn new(graph: Arc<Graph>) -> Result<Plan, String> {
        let g = &*graph;
        let nv = g.values.len();
        let mut slots: Vec<Slot> = vec![Slot::Heap; nv];
        for (v, val) in g.values.iter().enumerate() {
            if val.constant.is_some() {
                slots[v] = Slot::Const;
            }
        }
        for (k, &v) in g.inputs.iter().enumerate() {
            slots[v] = Slot::Input(k);
        }
        let mut def = vec![0usize; nv];
        let mut last_use = vec![0usize; nv];
        for (i, n) in g.nodes.iter().enumerate() {
            for &v in n.inputs.iter().flatten() {
                last_use[v] = last_use[v].max(i);
            }
            for &o in &n.outputs {
                def[o] = i;
                last_use[o] = last_use[o].max(i);
            }
        }
        for &o in &g.outputs {
            last_use[o] = usize::MAX;
        }
        // Roots: aliases point at a value with its own storage.
        let root = |slots: &[Slot], v: ValueId| match slots[v] {
            Slot::Alias(r) => r,
            _ => v,
        };
        let float_sized =
            |v: ValueId| g.values[v].dtype == DType::F32 && g.values[v].shape.is_some();
        for n in &g.nodes {
            for &o in &n.outputs {
                if slots[o] != Slot::Heap || !float_sized(o) {
                    continue;
                }
                if is_alias(&n.op)
                    && let Some(x) = n.inputs[0]
                    && float_sized(x)
                    && matches!(slots[x], Slot::Input(_) | Slot::Arena(_) | Slot::Alias(_))
                {
                    slots[o] = Slot::Alias(root(&slots, x));
                } else {
                    // Placed below; marked so aliases of it can be made.
                    slots[o] = Slot::Arena(0..0);
                }
            }
        }
        // A root lives as long as its longest-lived alias.
        let mut span = last_use.clone();
        for v in 0..nv {
            if let Slot::Alias(r) = slots[v] {
                span[r] = span[r].max(last_use[v]);
            }
        }
        let end = g.nodes.len();
        let mut items: Vec<Item> = Vec::new();
        for v in 0..nv {
            if let Slot::Arena(_) = slots[v] {
                let size = numel(g.values[v].shape.as_deref().unwrap_or(&[]));
                items.push(Item {
                    value: Some(v),
                    node: None,
                    size,
                    live: (def[v], span[v].min(end)),
                });
            }
        }
        let mut scratch = vec![None; g.nodes.len()];
        for (i, n) in g.nodes.iter().enumerate() {
            if let Op::Attention { .. } = n.op {
                let shape = |k: usize| {
                    n.inputs[k]
                        .and_then(|v| g.values[v].shape.clone())
                        .unwrap_or_default()
                };
                let size = attention::scratch_len(&shape(0), &shape(1), &shape(2))?;
                items.push(Item {
                    value: None,
                    node: Some(i),
                    size,
                    live: (i, i),
                });
            }
        }
        let lifetimes: Vec<Lifetime> = items
            .iter()
            .map(|it| Lifetime {
                size: it.size,
                live: it.live,
            })
            .collect();
        let (ranges, arena_len) = place(&lifetimes, ALIGN);
        for (it, r) in items.iter().zip(ranges) {
            match (it.value, it.node) {
                (Some(v), _) => slots[v] = Slot::Arena(r),
                (None, Some(i)) => scratch[i] = Some(r),
                _ => {}
            }
        }
        Ok(Plan {
            slots,
            scratch,
            last_use,
            arena_len,
            arena: Mutex::new(Vec::new()),
            graph,
        })
    }
}
