"""Which GPU devices a task or an actor gets, pure (issue 20).

The scheduler counts ``GPU`` as an amount like any resource; this pool says *which*
devices back that amount, so the worker can set ``CUDA_VISIBLE_DEVICES`` to exactly those.
A whole request (``num_gpus=2``) takes whole free devices; a fraction (``num_gpus=0.5``)
shares one device with others, packed best-fit (the fullest device it still fits on), as
Ray does. Amounts are counted in 1/10,000ths of a device so that sums stay exact.
"""

UNIT = 10_000  # shares per device


def _shares(amount: float) -> int:
    return int(round(amount * UNIT))


class GpuPool:
    """Free shares per device id (ids are strings, in the node's order)."""

    def __init__(self, ids=()):
        self.order = [str(i) for i in ids]
        self.free = {i: UNIT for i in self.order}

    def _pick(self, amount):
        """The devices (id, shares) that ``amount`` would take now, or None."""
        need = _shares(amount)
        if need <= 0 or not self.order:
            return [] if need <= 0 else None
        if need >= UNIT:
            whole = [i for i in self.order if self.free[i] == UNIT]
            count = -(-need // UNIT)  # a whole request above 1 is an integer (options check it)
            return [(i, UNIT) for i in whole[:count]] if len(whole) >= count else None
        best = None
        for i in self.order:
            f = self.free[i]
            if f >= need and (best is None or f < self.free[best]):
                best = i
        return None if best is None else [(best, need)]

    def can_take(self, amount) -> bool:
        return self._pick(amount) is not None

    def take(self, amount):
        """Devices for ``amount`` GPUs as a tuple of (id, shares); None if they are not free."""
        picked = self._pick(amount)
        if picked is None:
            return None
        for i, n in picked:
            self.free[i] -= n
        return tuple(picked)

    def give(self, taken):
        for i, n in taken or ():
            if i in self.free:
                self.free[i] = min(UNIT, self.free[i] + n)

    def validate(self, held):
        """``held``: every (id, shares) tuple handed out and not given back."""
        used = {i: 0 for i in self.order}
        for taken in held:
            for i, n in taken:
                used[i] += n
        for i in self.order:
            assert self.free[i] + used[i] == UNIT, \
                f"GPU {i}: {self.free[i]} free + {used[i]} held != {UNIT} shares"


def ids_of(taken) -> tuple:
    """The device ids of what ``take`` returned, for the worker."""
    return tuple(i for i, _n in taken or ())
