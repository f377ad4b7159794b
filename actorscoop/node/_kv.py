"""The node's small key-value store (shared constants, job metadata). A key's value may
refer to objects (``contained``): they stay alive while the key does."""
import collections

from .. import protocol as P


class KVStore:
    def __init__(self, raylet):
        self.r = raylet
        self.entries = {}  # key -> (data, contained object ids)
        self.waiters = collections.defaultdict(list)  # key -> [(client, request id)]

    def put(self, ident, rec):
        if rec.key in self.entries and not rec.overwrite:
            self.r._send(ident, P.KVReply(rec.request_id, True, None, f"key {rec.key!r} is already set"))
            return
        old = self.entries.get(rec.key)
        for oid in rec.contained:
            self.r.objects.pin(oid)
        self.entries[rec.key] = (rec.data, list(rec.contained))
        if old is not None:
            for oid in old[1]:
                self.r.objects.unpin(oid)
            self.r._delete_plasma()
        self.r._send(ident, P.KVReply(rec.request_id, True, None, ""))
        for client, rid in self.waiters.pop(rec.key, ()):
            if client in self.r.clients:
                self.r._send(client, P.KVReply(rid, True, rec.data, ""))

    def get(self, ident, rec):
        entry = self.entries.get(rec.key)
        if entry is not None:
            self.r._send(ident, P.KVReply(rec.request_id, True, entry[0], ""))
        elif rec.wait:
            self.waiters[rec.key].append((ident, rec.request_id))
        else:
            self.r._send(ident, P.KVReply(rec.request_id, False, None, ""))
