"""Placement groups on a raylet (issue 20): a client's requests (to the group keeper: this
node when it is alone or the head, else the head), and the bundles of groups this node
holds (prepare, commit, release: node/raylet/_groups.py drives them). A part of the Raylet
(node/raylet/_raylet.py)."""
import logging

from ... import protocol as P
from ... import scheduler as S
from ..._common import _errors
from ...exceptions import TaskPlacementGroupRemoved
from ...scheduler._groups import group_of
from ._groups import GroupManager, local_nodes

log = logging.getLogger("actorscoop.raylet")

_KEY_INDEX = 4  # a bundle's key in the scheduler: group id + 4-byte index


def bundle_key(pg_id, index):
    return pg_id + index.to_bytes(_KEY_INDEX, "big")


class Bundles:
    """The Raylet's placement groups (a mixin: the Raylet's own state and methods)."""

    _local_groups = None
    removed_groups = None  # hex of groups removed while bundles of theirs were here

    @property
    def groups(self):
        """The group keeper on this node: the head's, or our own on a node alone; None on a
        member of a cluster (the head keeps them)."""
        if self.cluster is not None:
            head = self.cluster.head
            return head.groups if head is not None else None
        if self._local_groups is None:
            self._local_groups = GroupManager(local_nodes(self.node_id, self.scheduler),
                                              lambda _node, op: self.on_bundle_op(op))
        return self._local_groups

    def _on_placement_group(self, ident, rec):
        rec = rec._replace(job=self._job_of(ident))
        groups = self.groups
        if groups is None:
            self.cluster.kv_forward(ident, rec)  # answered by the head through us
            return
        error, table = groups.request(rec, rec.job)
        self._send(ident, P.PlacementGroupReply(rec.request_id, error, table))

    def _groups_job_done(self, job):
        groups = self.groups
        if groups is not None:
            groups.job_done(job)
        elif self.cluster is not None:
            self.cluster.to_head(P.PlacementGroupOp(0, "job_done", b"", "", [], "", False, job))

    # ------------------------------------------------------------------ bundles held here
    def on_bundle_op(self, rec):
        key = bundle_key(rec.pg_id, rec.index)
        if rec.op == "prepare":
            self._feed([S.PrepareBundle(key, {k: float(v) for k, v in rec.resources.items() if v})])
        elif rec.op == "commit":
            self._feed([S.CommitBundle(key, dict(rec.renamed))])
        elif rec.op == "release":
            if rec.renamed:
                if self.removed_groups is None:
                    self.removed_groups = set()
                self.removed_groups.add(rec.pg_id.hex())
                self._kill_actors_in(rec.pg_id.hex())
            self._feed([S.ReleaseBundle(key, dict(rec.renamed))])
        else:
            self.drops.drop("BundleOp of an unknown kind", repr(rec.op)[:40])

    def _do_bundle_prepared(self, instr):
        pg_id, index = instr.key[:-_KEY_INDEX], int.from_bytes(instr.key[-_KEY_INDEX:], "big")
        reply = P.BundleReply(pg_id, index, self.node_id, instr.ok)
        if self.cluster is None:
            self.groups.on_reply(reply)
        else:
            self.cluster.to_head(reply)

    def _do_resubmit(self, instr):
        task = self.tasks.get(instr.task_id)
        if task is not None:
            self.submit_local(task)

    def _kill_actors_in(self, group_hex):
        for a in self.actors.in_group(group_hex):
            log.info("placement group %s removed: killing actor %s", group_hex[:12], a.id.hex()[:12])
            a.group_removed = True
            self.actors.kill(a.id, True, route=False,
                             cause=f"its placement group {group_hex[:12]} was removed")

    def in_removed_group(self, resources):
        removed = self.removed_groups
        return bool(removed) and any(group_of(k) in removed for k in resources)

    def group_removed_error(self, name):
        return _errors.pack_exception(TaskPlacementGroupRemoved(
            f"task {name}() was scheduled into a placement group that has been removed: what ran "
            "in its bundles was killed and what waited for them fails"))
