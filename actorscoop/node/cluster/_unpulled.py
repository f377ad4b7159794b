"""Results an owner could not pull for want of room in its store.

A task another node ran made a large result; its owner pulls it into its own store. When
that store has no room (objects in use fill it) for ``pull_room_wait`` seconds, the pull
fails: the result stays in the store of the node that ran the task (held under the task's
key), and its ref fails with ObjectStoreFullError, which says so. A later ``get`` of it
pulls it again, once: that get is answered when that one pull ends — with the value, or
with ObjectStoreFullError again if the store still had no room within its wait (issue 19:
it used to pull again and again until the get's own timeout). Once no ref to it is left,
the node holding it is told to free it.
"""
from ..._common import _errors
from ... import protocol as P
from ...exceptions import ObjectLostError


class UnpulledResults:
    def __init__(self, link):
        self.link = link  # the ClusterLink: its raylet (r), transfers and way to the head
        self.where = {}  # object id -> (node id, transfer address, key)
        self.by_key = {}  # key -> set of object ids still there: FreeRemote when empty
        self.repulls = {}  # object id -> set of clients waiting for its one pull

    def keep_remote(self, results, extras, failed, node_id, key):
        """Our store had no room for some of a task's results (``failed``: id -> why): they
        stay in the store of the node that ran it; their values become the error."""
        for res in results + extras:
            if res[1] != P.VALUE_REMOTE:
                continue
            oid, address = res[0], self.link.reachable(res[2][1])
            if oid in failed:
                self.where[oid] = (node_id, address, key)
                self.by_key.setdefault(key, set()).add(oid)
                res[1], res[2] = P.VALUE_ERROR, unpulled_error(oid, failed[oid])
            else:
                res[1], res[2] = P.VALUE_PLASMA, None

    def repull(self, oid, client):
        """A get of a result we could not pull: pull it again (one pull, however many gets
        ask meanwhile), and answer ``client`` when that ends. False if ``oid`` is not such
        a result."""
        where = self.where.get(oid)
        if where is None:
            return False
        waiting = self.repulls.get(oid)
        if waiting is None:
            waiting = self.repulls[oid] = set()
            self.link.transfer.pull(oid, where[1], lambda error: self._repulled(oid, error))
        waiting.add(client)
        return True

    def _repulled(self, oid, error):
        r = self.link.r
        waiting = self.repulls.pop(oid, set())
        e = r.objects.get(oid)
        if error is None:
            self.forget(oid)
            if e is None or e.kind != P.VALUE_ERROR:  # freed meanwhile
                r.objects.free_later([oid])
                r.delete_plasma()
                return
            r.objects.pulled_late(oid, e)
        elif getattr(error, "store_full", False):
            if e is not None:
                e.data = unpulled_error(oid, error)
        else:  # its node died, or lost it: no later get will find it either
            node_id = self.where.get(oid, (b"",))[0]
            self.forget(oid)
            if e is not None:
                e.data = _errors.pack_exception(ObjectLostError(
                    f"object {oid.hex()} could not be fetched from node {node_id.hex()[:8]}, which held "
                    f"it while this node's object store had no room for it: {error}"))
        if e is not None:
            value = P.ObjectValue(oid, e.kind, e.data)
            for client in waiting:
                if r.connected(client):
                    r.send(client, value)

    def forget(self, oid):
        """``oid`` is pulled, or nobody wants it any more: once no result of its task is left
        on the node that ran it, that node may free them."""
        where = self.where.pop(oid, None)
        if where is None:
            return
        node_id, _address, key = where
        left = self.by_key.get(key)
        if left is not None:
            left.discard(oid)
            if not left:
                del self.by_key[key]
                self.link.to_head(P.FreeRemote(node_id, key))

    def sweep(self, objects):
        """Every tick: results whose refs are all gone are freed where they are."""
        for oid in [oid for oid in self.where if oid not in objects and oid not in self.repulls]:
            self.forget(oid)


def unpulled_error(oid, why):
    from ...plasma._errors import ObjectStoreFullError
    return _errors.pack_exception(ObjectStoreFullError(
        f"object {oid.hex()} could not be fetched into this node: {why}. Nothing is lost: the node "
        "that holds it keeps it; get it again once there is room (free space in /dev/shm, or the "
        "node's shm_dir; delete objects you no longer need; or start the node with a smaller "
        "--object-store-memory).", object_id=oid, no_room=True))
