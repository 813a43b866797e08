"""A dispatch mode that lists the aten operations a piece of code runs (what a GPU would launch), for the tests."""

from torch.utils._python_dispatch import TorchDispatchMode

# ops that make the host wait for a device (or, on the CPU, mark where it would have to): reading a scalar
# back, ops whose output size depends on the data, and two that do unless told the size or not to check
_SYNCING_OPS = {"_local_scalar_dense", "item", "is_nonzero", "equal", "allclose", "nonzero", "masked_select",
                "_unique2", "unique_dim", "unique_consecutive", "bincount"}
_SYNCING_UNLESS = {"repeat_interleave": lambda kw: kw.get("output_size") is not None,
                   "segment_reduce": lambda kw: kw.get("unsafe") is True}


class SyncWatch(TorchDispatchMode):
    """Records every aten op called while active, and the ones that would wait for a device."""

    def __init__(self):
        super().__init__()
        self.ops, self.syncing = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name.split("::")[-1]
        self.ops.append(name)
        if name in _SYNCING_OPS or (name in _SYNCING_UNLESS and not _SYNCING_UNLESS[name](kwargs)):
            self.syncing.append(name)
        return func(*args, **kwargs)
