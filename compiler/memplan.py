"""Memory planning: every array an entry point materializes gets a slot in ONE arena that the
caller allocates once per batch size and passes in, and values whose lifetimes do not overlap
share a slot. A steady-state step then allocates nothing.

A value is materialized when a kernel other than its own reads it (values used only inside
their fused loop stay scalars), or when it is the result of a BLAS call, a row kernel or a
reduction into an array. Outputs go to the caller's `out` array, in-place updates into their
param, reshapes are views: none of these needs a slot.

Lifetimes are kernel positions in the schedule. A slot is free for a new value once its last
reader has run; inside a fused loop a value may also take the slot of an operand that dies in
that very loop (each element is read before it is overwritten: stores come last in the body).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from .fuse import Rules, Schedule, entry_roots, schedule
from .ir import Graph
from .shapes import B

ALIGN = 16          # slot offsets are multiples of 16 elements (64 bytes in float32)


@dataclass
class MemoryPlan:
    slots: List[tuple]                      # the shape of each slot
    slot_of: Dict[int, int]                 # node -> slot
    reused: int = 0                         # values that took a slot another value had used
    schedule: Optional[Schedule] = None     # the kernel order the lifetimes refer to
    scratch: Dict[int, int] = field(default_factory=dict)    # node -> slot of its kernel's work array

    def layout(self):
        """Each slot's offset into the arena as (a, c): a * B + c elements, and the arena size."""
        a = c = 0
        offsets = []
        for shape in self.slots:
            offsets.append((a, c))
            static = 1
            for d in shape:
                if d != B:
                    static *= d
            static = -(-static // ALIGN) * ALIGN
            if B in shape:
                a += static
            else:
                c += static
        return offsets, (a, c)


def materialized(G: Graph, sched: Schedule, returns, copies) -> List[int]:
    """The values that need a slot, in schedule order."""
    copied = {v for _, v in copies}
    out = []
    for k, K in enumerate(sched.kernels):
        for n in K.nodes:
            if (G.shape(n) == () or K.kind in ("view", "expr") or n in sched.inplace or n in returns
                    or G.op(n) == "reshape"):
                continue
            if K.kind != "loop" or n in sched.sinks or n in copied:
                out.append(n)
            elif any(sched.kernel_of.get(u, -1) != k for u in G.users(n) if u in sched.kernel_of):
                out.append(n)
    return out


def _last_use(G: Graph, sched: Schedule, n: int, end: int) -> int:
    last = sched.kernel_of[n]
    for u in G.users(n):
        if u not in sched.kernel_of:
            continue
        last = max(last, sched.kernel_of[u])
        if G.op(u) == "reshape":              # a view keeps its base alive
            last = max(last, _last_use(G, sched, u, end))
    return last


def plan(G: Graph, sched: Schedule, returns, reuse: bool = True,
         scratch: Optional[Callable[[Graph, int], Optional[tuple]]] = None) -> MemoryPlan:
    """`scratch(G, n)`: the shape of the work array n's kernel needs while it runs, or None;
    such an array lives during that kernel only (keyed as -1 - n among the values)."""
    end = len(sched.kernels)
    values = materialized(G, sched, set(returns), sched.copies)
    copied = {v for _, v in sched.copies}
    last = {n: (end if n in copied else _last_use(G, sched, n, end)) for n in values}
    shape_of = {n: G.shape(n) for n in values}
    at = {n: sched.kernel_of[n] for n in values}
    work: Dict[int, int] = {}
    if scratch is not None:
        for k, K in enumerate(sched.kernels):
            for n in K.nodes:
                s = scratch(G, n)
                if s is not None:
                    key = -1 - n
                    values.append(key)
                    shape_of[key], at[key], last[key] = tuple(s), k, k
        values.sort(key=lambda n: (at[n], n >= 0))      # a kernel's work array before its result
    slots: List[tuple] = []
    owner: List[int] = []            # value currently in each slot
    slot_of: Dict[int, int] = {}
    reused = 0
    for n in values:
        k = at[n]
        K = sched.kernels[k]
        shape = shape_of[n]
        pick = None
        if reuse:
            for s, held in enumerate(owner):
                if slots[s] != shape:
                    continue
                if last[held] < k:
                    pick = s
                    break
                if (n >= 0 and held >= 0 and last[held] == k and K.kind == "loop" and n not in sched.sinks
                        and _dies_elementwise(G, sched, held, k)):
                    pick = s
                    break
        if pick is None:
            slots.append(shape)
            owner.append(n)
            pick = len(slots) - 1
        else:
            owner[pick] = n
            reused += 1
        if n >= 0:
            slot_of[n] = pick
        else:
            work[-1 - n] = pick
    return MemoryPlan(slots, slot_of, reused, sched, work)


def _dies_elementwise(G: Graph, sched: Schedule, held: int, k: int) -> bool:
    """`held` is read in loop k only element by element at the loop's own index (so a value
    stored in that loop may overwrite it), and is not defined there nor seen through a view."""
    K = sched.kernels[k]
    if sched.kernel_of[held] == k or G.shape(held) != K.shape:
        return False
    for u in G.users(held):
        if G.op(u) == "reshape":
            return False
        if sched.kernel_of.get(u) == k and (G.op(u) in ("expand", "onehot") or u in K.pre):
            return False            # (a product computed in the loop reads it at other indices)
    return True


def plan_memory(G: Graph, rules: Rules) -> int:
    """The pass: plan the arena of this entry graph (G.graph['memplan']) for the kernels of the
    backend's `rules`; returns how many values share a slot with an earlier one."""
    losses, returns, assigns = entry_roots(G)
    sched = schedule(G, losses + returns + [v for _, v in assigns], assigns, rules)
    mp = plan(G, sched, returns, scratch=rules.scratch)
    G.memplan = mp
    return mp.reused
