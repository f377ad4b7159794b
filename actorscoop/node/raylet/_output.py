"""What a raylet does with its workers' output: lines go to the driver whose task printed
them (a pool worker marks whose output follows: protocol/_output.py), prefixed with the
task's name and the worker's pid; a task run for another node sends its lines home. A
part of the Raylet (node/raylet/_raylet.py)."""
from ... import protocol as P
from ...protocol._output import TASK_MARK


class WorkerOutput:
    """The Raylet's output forwarding (a mixin)."""

    def _forward_log(self, w):
        lines = self.workers.read_log(w)
        if w.log_eof:
            self.loop.remove(w.log_fd)
        if not lines:
            return
        if w.actor_id is not None:
            actor = self.actors.log_target(w.worker_id)
            if actor is not None:
                name, target, call = actor
                self._send_log(w, f"{name} pid={w.pid}", [target], call, "\n".join(lines))
                return
        # A pool worker runs many tasks; it marks whose output follows when that changes.
        mark = TASK_MARK.decode()
        start = 0
        for i, line in enumerate(lines + [mark]):
            if not line.startswith(mark):
                continue
            if i > start:
                self._send_task_log(w, "\n".join(lines[start:i]))
            if i < len(lines):
                tid, _, name = line[len(mark):].partition(" ")
                try:
                    w.output_task = (bytes.fromhex(tid), name)
                except ValueError:
                    w.output_task = None
            start = i + 1

    def _send_task_log(self, w, text):
        """Lines a pool worker printed for the task it last marked (or, unmarked, for the
        task the scheduler last gave it)."""
        task = name = None
        if w.output_task is not None:
            tid, name = w.output_task
            task = self.tasks.get(tid)
        else:
            tids = self.scheduler.workers.get(w.worker_id)
            task = self.tasks.get(tids.tasks[-1]) if tids is not None and tids.tasks else None
        name = task.spec.name if task is not None else (name or "worker")
        targets = [task.job] if task is not None else \
            [i for i, c in self.clients.items() if c.kind == P.KIND_DRIVER and i == c.ident]
        self._send_log(w, f"{name} pid={w.pid}", targets, task, text)

    def _send_log(self, w, prefix, targets, task, text):
        if task is not None and task.owner is not None:
            # a task run for another node: its output goes to its owner's driver
            self.cluster.calls.to_owner(task.spec.task_id, P.RemoteLog(
                task.owner, task.spec.task_id, f"{prefix}, node={self.node_id.hex()[:8]}", text))
            return
        for t in targets:
            if t in self.clients:
                self._send(t, P.LogLines(prefix, text))
