"""What workers write to their stdout that is more than text: the raylet and the driver
read these lines (see node/raylet/_raylet.py ``_forward_log`` and
_driver/_remote_output.py).

* ``TASK_MARK`` + task id (hex) + " " + name: the worker says whose output follows (one
  worker runs many tasks, each on its own stack; it writes this when the task writing
  changes);
* ``BAR_MARK`` + a JSON object: one state of a progress bar made by ``actorscoop.tqdm``
  in a task (id, desc, n, total, unit, unit_scale, postfix, leave, closed, task).
"""
import json
import math

TASK_MARK = b"\x00asc-task "
BAR_MARK = "@@actorscoop-tqdm@@ "  # starts a bar state (readable where logs are read raw)


def encode_bar_state(state):
    """The stdout line (with its newline) that carries one bar state."""
    return BAR_MARK + json.dumps(state, separators=(",", ":")) + "\n"


_NUMBER = (int, float)
#: what each field of a state may be (checked before tqdm sees it: tqdm leaves its lock
#: held when drawing raises, and every bar of the process then hangs)
_FIELDS = {"id": (str,), "desc": (str, type(None)), "n": _NUMBER,
           "total": _NUMBER + (type(None),), "unit": (str, type(None)),
           "unit_scale": (bool,) + _NUMBER, "postfix": (str, type(None)), "leave": (bool,),
           "closed": (bool,), "task": (str, type(None))}


def decode_bar_state(text):
    """The state in a line that holds BAR_MARK, or None if it is not a valid state."""
    try:
        state = json.loads(text[text.index(BAR_MARK) + len(BAR_MARK):])
    except ValueError:
        return None
    if not isinstance(state, dict) or not all(
            isinstance(state.get(k), t) for k, t in _FIELDS.items() if k in state or k in ("id", "n")):
        return None
    if not math.isfinite(state["n"]):
        return None
    return state
