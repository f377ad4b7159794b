"""The cluster's small key-value store (shared constants, job metadata), kept by the head:
other nodes forward their clients' requests to it (see _cluster.py). A key's value may
refer to objects (``contained``): they stay alive while the key does (on the head's node;
refs to objects of other nodes are not kept alive this way yet)."""
import collections

from ... import protocol as P


class KVStore:
    def __init__(self, raylet):
        self.r = raylet
        self.entries = {}  # key -> (data, contained object ids)
        self.waiters = collections.defaultdict(list)  # key -> [(client, request id)]

    def _reply(self, ident, rec):
        """To a local client, or (ident ("node", routing id)) to a node that asked for one."""
        if type(ident) is tuple:
            self.r.cluster.send_to(ident[1], rec)
        else:
            self.r._send(ident, rec)

    def _still_there(self, ident):
        return type(ident) is tuple or ident in self.r.clients

    def put(self, ident, rec):
        if rec.key in self.entries and not rec.overwrite:
            self._reply(ident, P.KVReply(rec.request_id, True, None, f"key {rec.key!r} is already set"))
            return
        old = self.entries.get(rec.key)
        for oid in rec.contained:
            self.r.objects.pin(oid)
        self.entries[rec.key] = (rec.data, list(rec.contained))
        if old is not None:
            for oid in old[1]:
                self.r.objects.unpin(oid)
            self.r._delete_plasma()
        self._reply(ident, P.KVReply(rec.request_id, True, None, ""))
        for client, rid in self.waiters.pop(rec.key, ()):
            if self._still_there(client):
                self._reply(client, P.KVReply(rid, True, rec.data, ""))

    def get(self, ident, rec):
        entry = self.entries.get(rec.key)
        if entry is not None:
            self._reply(ident, P.KVReply(rec.request_id, True, entry[0], ""))
        elif rec.wait:
            self.waiters[rec.key].append((ident, rec.request_id))
        else:
            self._reply(ident, P.KVReply(rec.request_id, False, None, ""))
