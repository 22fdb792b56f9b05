//! The trait every resource kind implements. A kind is one file under `resource/`: its desired
//! state (built from the spec by `from_spec`, registered in [`super::Desired`]), its share of the
//! host probe, the pure `diff`, `apply`, what it owns on the host for the manifest, and — in the
//! same file — the removal of what it owned once it leaves the spec
//! ([`super::removal::Removal`]). The engine only ever calls these methods; most have defaults,
//! so a kind states only what it has.

use super::batch::Staged;
use super::removal::Claims;
use super::{Action, Applied, ApplyError, AttrChange, Decision, HostFacts, ProbeRequest};
use crate::spec::{Kind, ResourceId};
use crate::state::manifest::Owned;
use crate::transport::Transport;

/// One resource kind's behaviour, for one instance (a resource on one host).
#[async_trait::async_trait]
pub trait ResourceKind: Send + Sync {
    /// The kind.
    fn kind(&self) -> Kind;

    /// The host paths this instance manages (duplicate detection, implied edges, claims).
    fn paths(&self) -> Vec<&str> {
        Vec::new()
    }

    /// The directory this instance manages, if any (what is below it depends on it).
    fn managed_dir(&self) -> Option<&str> {
        None
    }

    /// A short human summary of the target ("/etc/demo/motd").
    fn target(&self) -> String {
        self.paths().join(", ")
    }

    /// Whether the content must never be shown.
    fn sensitive(&self) -> bool {
        false
    }

    /// The new text content to diff against, when it is text and may be shown.
    fn new_text(&self) -> Option<&[u8]> {
        None
    }

    /// Adds what this instance needs to the host's probe. The default asks for its paths.
    fn add_to_probe(&self, probe: &mut ProbeRequest) {
        probe.paths.extend(self.paths().into_iter().map(str::to_string));
    }

    /// Gets ready locally what `diff` needs before it can decide (e.g. a fetched archive).
    /// Never fails: a failure is kept for `diff` to report.
    async fn prepare(&self) {}

    /// Decides, purely, what to do given what the probe found, and why.
    fn diff(&self, facts: &HostFacts) -> Decision;

    /// Carries out `decision` on the host, and returns what the outcome tells besides the
    /// decision's reason.
    async fn apply(&self, transport: &dyn Transport, decision: &Decision) -> Result<Applied, ApplyError>;

    /// The files carrying out `decision` writes, when the executor may write them together with
    /// the others of the host's wave (one remote command for the whole wave, see
    /// [`super::batch`]); [`ResourceKind::apply_staged`] then does the rest. `None` (the
    /// default): [`ResourceKind::apply`] does everything. An error (e.g. a certificate that
    /// cannot be issued) fails the instance before anything is written.
    async fn stage(&self, _decision: &Decision) -> Result<Option<Staged>, ApplyError> {
        Ok(None)
    }

    /// Carries out the rest of `decision` once the files of [`ResourceKind::stage`] are written
    /// (and systemd reloaded, when the stage asked for it).
    async fn apply_staged(&self, _transport: &dyn Transport, _decision: &Decision) -> Result<Applied, ApplyError> {
        Ok(Applied::plain())
    }

    /// For a kind that checks rather than changes (`check`): runs the check, with no re-read
    /// before, and returns what passed. `None` for every kind that changes state.
    async fn run_check(&self, _transport: &dyn Transport) -> Option<Result<String, ApplyError>> {
        None
    }

    /// What this instance owns on its host, for the manifest (`None`: nothing, e.g. a check).
    /// `created` says whether this run made it.
    fn owned(&self, created: bool) -> Option<Owned>;

    /// [`ResourceKind::owned`] after a run that carried out `planned` (the attributes of its
    /// decision), for a kind whose decision says more about what it made (the folders a `cert`
    /// created). The default is `owned`.
    fn owned_after(&self, created: bool, planned: &[super::AttrChange]) -> Option<Owned> {
        let _ = planned;
        self.owned(created)
    }

    /// Records what this instance (resource `id`) claims on its host: a removal of something
    /// that left the spec never touches it. The default claims its paths.
    fn claim(&self, id: &ResourceId, claims: &mut Claims) {
        claims.add_paths(id, self.paths());
    }

    /// The instance on the same host whose apply carries this one's state, when it is not this
    /// one (firewall resources share one table per host). The graph makes it wait for that one.
    fn written_by(&self) -> Option<&ResourceId> {
        None
    }

    /// Whether `--replace` can make this instance again ([`ResourceKind::replaced`]).
    fn replaceable(&self) -> bool {
        false
    }

    /// `--replace`: the decision that makes this instance again although its own diff
    /// (`decision`, a no-op or an in-place update) asks for less: a file written again, a unit
    /// restarted, a certificate reissued. Kinds that are not [`ResourceKind::replaceable`] keep
    /// `decision`.
    fn replaced(&self, decision: Decision) -> Decision {
        decision
    }

    /// `--replace ca.NAME`: when this instance is a certificate of the generated CA `name`, it
    /// plans the CA's phased rotation (or, when the state dir has no CA to rotate from, a new CA
    /// and its own reissue by it), and says so (`true`).
    fn replace_ca(&mut self, _name: &str) -> bool {
        false
    }

    /// The rotation of this certificate's CA in progress (or started by `--replace ca.NAME`):
    /// the planner gathers them into the plan's rotations.
    fn ca_rotation(&self) -> Option<super::cert::RotationOf> {
        None
    }

    /// After a rotation of the CA `name` moved on in the state dir: reads the CA and its rotation
    /// again. Returns whether this instance is a certificate of that CA.
    fn reload_ca(&mut self, _name: &str) -> bool {
        false
    }

    /// Resources whose changes restart this instance; they are also dependencies.
    fn restart_triggers(&self) -> &[ResourceId] {
        &[]
    }

    /// Restart triggers whose changes the service picks up by itself when
    /// [`ResourceKind::picked_up_live`] says so (a unit's `reloads_certificates`).
    fn reloads(&self) -> &[ResourceId] {
        &[]
    }

    /// Whether a service that re-reads this resource by itself needs no restart for a change
    /// with `action` and `attrs` (a certificate issued again whose CA file stays as it is).
    fn picked_up_live(&self, _action: Action, _attrs: &[AttrChange]) -> bool {
        false
    }

    /// The paths whose change after the service started still needs a restart when the service
    /// re-reads this resource by itself (a certificate's CA file). By default all of them.
    fn restart_paths_when_reloaded(&self) -> Vec<&str> {
        self.paths()
    }

    /// Tells the instance the host paths its restart triggers manage on its host.
    fn watch_paths(&mut self, _paths: Vec<super::unit::WatchedPath>) {}

    /// Adjusts a decision for dependencies on the same host that changed (apply) or are planned
    /// to change (plan, `planned`).
    fn with_changed_deps(&self, decision: Decision, _changed: &[ResourceId], _planned: bool) -> Decision {
        decision
    }

    /// User and group names this instance needs to exist (it is applied after their provider).
    fn requires_users(&self) -> Vec<&str> {
        Vec::new()
    }

    /// User and group names this instance creates.
    fn provides_users(&self) -> Vec<&str> {
        Vec::new()
    }

    /// Whether the executor must start this resource's instances on all their hosts at once.
    fn start_together(&self) -> bool {
        false
    }

    /// `rolling`: how many hosts may be disrupted at once, and the check gating each batch.
    fn rolling(&self) -> Option<(usize, Option<&ResourceId>)> {
        None
    }

    /// The cluster member this instance is (`cluster` kind): its steps are decided for the
    /// whole cluster by the planner and run by the executor with the other members' hosts.
    fn member(&self) -> Option<&super::cluster::DesiredMember> {
        None
    }

    /// The cluster member this instance is, to link it (see [`ResourceKind::member`]).
    fn member_mut(&mut self) -> Option<&mut super::cluster::DesiredMember> {
        None
    }

    /// The systemd unit this instance manages, if it is one (`etcd.service`).
    fn systemd_unit(&self) -> Option<&str> {
        None
    }

    /// Whether carrying out `decision` interrupts a running service (see `rolling`).
    fn disrupts(&self, _facts: &HostFacts, _decision: &Decision) -> bool {
        false
    }
}
