"""The cluster's small key-value store (shared constants, job metadata), kept by the head:
other nodes forward their clients' requests to it (see node/cluster/_link.py). A key's value may
refer to objects (``contained``): they stay alive while the key does (on the head's node;
refs to objects of other nodes are not kept alive this way yet)."""
import collections

from ... import protocol as P


class KVStore:
    def __init__(self, raylet):
        self.raylet = raylet  # a KVPort: answer clients, pin and release objects
        self.entries = {}  # key -> (data, contained object ids)
        self.waiters = collections.defaultdict(list)  # key -> [(client, request id)]

    def _reply(self, ident, rec):
        """To a local client, or (ident ("node", routing id)) to a node that asked for one."""
        if type(ident) is tuple:
            self.raylet.cluster.send_to(ident[1], rec)
        else:
            self.raylet.send(ident, rec)

    def _still_there(self, ident):
        return type(ident) is tuple or self.raylet.connected(ident)

    def put(self, ident, rec):
        if rec.key in self.entries and not rec.overwrite:
            self._reply(ident, P.KVReply(rec.request_id, True, None, f"key {rec.key!r} is already set"))
            return
        old = self.entries.get(rec.key)
        self.raylet.pin(rec.contained)
        self.entries[rec.key] = (rec.data, list(rec.contained))
        if old is not None:
            self.raylet.release(old[1])
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
