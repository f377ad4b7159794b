"""Actors on other nodes, the link's side (a mixin of ClusterLink, _link.py): actors this
node cannot host go to the head, those it hosts are announced, calls to actors elsewhere
leave through the head (then straight there: _peer_calls.py), named actors are looked up
cluster-wide, and actors the head places here are taken in."""
from ... import protocol as P

REMOTE = b"\x00remote:"  # prefix of the holder identity of a task run for another node


class RemoteActors:
    def spill_actor(self, a, task):
        """This node can never host the actor: the head places it on one that can."""
        spec = task.spec
        task.remote = True
        self.r.tasks[spec.task_id] = task  # its __init__ result comes back as a TaskResult
        self.to_head(P.SpillActor(self.r.node_id, list(a.spec), list(spec), self._portable_deps(spec),
                                  self._function(spec.function_id)))

    def restartable(self, a):
        """A detached actor we host may outlive this node: the head learns how to restart it."""
        spec = a.creation.spec
        self.to_head(P.ActorRestartSpec(self.r.node_id, list(a.spec), list(spec), self._portable_deps(spec),
                                        self._function(spec.function_id)))

    def hosted(self, a):
        self.to_head(P.ActorHosted(a.id, self.r.node_id, a.spec.name, a.spec.namespace, a.spec.meta))

    def route_call(self, task):
        task.remote = True
        self.r.task_origins.append((task.spec.task_id, task.submitted, task.submitter))
        self.to_head(P.RouteCall(self.r.node_id, list(task.spec), self._portable_deps(task.spec)))

    def kv_forward(self, ident, rec):
        """A client's key-value request, to the head (its answer comes back to the client)."""
        rid = next(self._request_ids)
        self._lookups[rid] = (ident, rec.request_id)
        self.to_head(rec._replace(request_id=rid))

    def lookup(self, ident, rec):
        rid = next(self._request_ids)
        self._lookups[rid] = (ident, rec.request_id)
        self.to_head(P.ActorLookup(rid, rec.name, rec.namespace))

    def run_actor(self, rec):
        """Host an actor another node could not."""
        r = self.r
        create = P.CreateActor(*rec.create)
        spec = P.SubmitTask(*rec.spec)
        if spec.task_id in r.tasks or r.actors.alive_here(create.actor_id):
            self.drops.drop("RunActor of an actor this node has", f"actor {create.actor_id.hex()} is here already")
            return
        if r.actors.name_taken(create):
            self._refuse_run(rec, spec, f"another live actor here is named {create.name!r}")
            return
        holder = REMOTE + create.actor_id
        r.actors.on_create(holder, create._replace(request_id=0, get_if_exists=True))
        task = self._take(rec, spec)
        del r.tasks[spec.task_id]  # the actor keeps its creation task itself
        task.missing = set(r.missing_deps(spec))
        r.actors.on_creation_task(task)
