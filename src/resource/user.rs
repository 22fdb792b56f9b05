//! `user`: a user account and its primary group (created when missing), with uid, home, shell
//! and supplementary groups when the spec sets them. The probe's share is `getent passwd` and
//! `getent group` over every name the host's users need. Users are deleted only when they leave
//! the spec with `remove = true` (their [`Removal`] is below).

use std::collections::BTreeMap;

use super::batch::Staged;
use super::probe::ProbeError;
use super::removal::{Claims, Orphan, Removal};
use super::{Action, Applied, ApplyError, AttrChange, Decision, HostFacts, ProbeRequest, ResourceKind, run_checked};
use crate::spec::{Kind, ResourceId, UserSpec};
use crate::state::manifest::{Owned, OwnedUser};
use crate::transport::{Transport, argv};

/// Creates the group `$1` unless it exists; `$2` non-empty makes it a system group (`group.sh`).
const GROUP_SCRIPT: &str = include_str!("group.sh");

/// A user as it should be on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredUser {
    /// Login name.
    pub name: String,
    /// Primary group name.
    pub group: String,
    /// System account.
    pub system: bool,
    /// Fixed uid.
    pub uid: Option<u32>,
    /// Home directory.
    pub home: Option<String>,
    /// Login shell.
    pub shell: Option<String>,
    /// Supplementary groups the user must be in.
    pub groups: Vec<String>,
    /// Deleted when it leaves the spec.
    pub remove: bool,
}

/// One `getent passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFact {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// One `getent group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFact {
    /// gid.
    pub gid: u32,
    /// Supplementary members.
    pub members: Vec<String>,
}

impl DesiredUser {
    /// A `[user.*]` table (nothing in it is templated).
    pub fn from_spec(spec: &UserSpec) -> Self {
        Self {
            name: spec.name.value.clone(),
            group: spec.group.as_ref().map_or_else(|| spec.name.value.clone(), |g| g.value.clone()),
            system: spec.system,
            uid: spec.uid,
            home: spec.home.as_ref().map(|h| h.value.clone()),
            shell: spec.shell.as_ref().map(|s| s.value.clone()),
            groups: spec.groups.iter().map(|g| g.value.clone()).collect(),
            remove: spec.remove,
        }
    }

    /// Every group name the probe must look up.
    pub fn group_names(&self) -> Vec<&str> {
        std::iter::once(self.group.as_str()).chain(self.groups.iter().map(String::as_str)).collect()
    }
}

#[async_trait::async_trait]
impl ResourceKind for DesiredUser {
    fn kind(&self) -> Kind {
        Kind::User
    }

    fn target(&self) -> String {
        format!("user {}", self.name)
    }

    fn add_to_probe(&self, probe: &mut ProbeRequest) {
        probe.users.insert(self.name.clone());
        probe.groups.extend(self.group_names().into_iter().map(str::to_string));
    }

    fn owned(&self, _created: bool) -> Option<Owned> {
        Some(Owned::User(OwnedUser { name: self.name.clone(), remove: self.remove }))
    }

    fn claim(&self, id: &ResourceId, claims: &mut Claims) {
        claims.users.entry(self.name.clone()).or_insert_with(|| id.to_string());
    }

    fn requires_users(&self) -> Vec<&str> {
        self.groups.iter().map(String::as_str).filter(|g| *g != self.group).collect()
    }

    fn provides_users(&self) -> Vec<&str> {
        vec![self.name.as_str(), self.group.as_str()]
    }

    /// Decides, purely, what to do given the host's accounts.
    fn diff(&self, facts: &HostFacts) -> Decision {
        let group = facts.groups.get(&self.group);
        let Some(user) = facts.users.get(&self.name) else {
            let reason = if group.is_some() { "user does not exist" } else { "user and group do not exist" };
            let mut d = Decision::new(Action::Create, reason);
            d.attrs.push(AttrChange::new("group", None, Some(self.group.clone())));
            if let Some(uid) = self.uid {
                d.attrs.push(AttrChange::new("uid", None, Some(uid.to_string())));
            }
            if let Some(h) = &self.home {
                d.attrs.push(AttrChange::new("home", None, Some(h.clone())));
            }
            if let Some(s) = &self.shell {
                d.attrs.push(AttrChange::new("shell", None, Some(s.clone())));
            }
            if !self.groups.is_empty() {
                d.attrs.push(AttrChange::new("groups", None, Some(self.groups.join(","))));
            }
            return d;
        };
        let mut attrs = Vec::new();
        let mut reasons = Vec::new();
        if let Some(uid) = self.uid
            && user.uid != uid
        {
            reasons.push("uid differs".to_string());
            attrs.push(AttrChange::new("uid", Some(user.uid.to_string()), Some(uid.to_string())));
        }
        match group {
            None => {
                reasons.push(format!("group {} does not exist", self.group));
                attrs.push(AttrChange::new("group", Some(gid_name(facts, user.gid)), Some(self.group.clone())));
            }
            Some(g) if g.gid != user.gid => {
                reasons.push("primary group differs".to_string());
                attrs.push(AttrChange::new("group", Some(gid_name(facts, user.gid)), Some(self.group.clone())));
            }
            Some(_) => {}
        }
        if let Some(h) = &self.home
            && user.home != *h
        {
            reasons.push("home differs".to_string());
            attrs.push(AttrChange::new("home", Some(user.home.clone()), Some(h.clone())));
        }
        if let Some(s) = &self.shell
            && user.shell != *s
        {
            reasons.push("shell differs".to_string());
            attrs.push(AttrChange::new("shell", Some(user.shell.clone()), Some(s.clone())));
        }
        let missing: Vec<&str> = self
            .groups
            .iter()
            .filter(|g| facts.groups.get(*g).is_none_or(|f| !f.members.contains(&self.name) && f.gid != user.gid))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            reasons.push(format!("not in group{} {}", if missing.len() == 1 { "" } else { "s" }, missing.join(", ")));
            attrs.push(AttrChange::new("groups", None, Some(missing.join(","))));
        }
        if attrs.is_empty() {
            return Decision::noop("user exists as specified");
        }
        let mut d = Decision::new(Action::Update, reasons.join(", "));
        d.attrs = attrs;
        d
    }

    /// Carries out a decision made by [`DesiredUser::diff`]: the group first, then `useradd`
    /// or `usermod`.
    async fn apply(&self, transport: &dyn Transport, decision: &Decision) -> Result<Applied, ApplyError> {
        super::batch::run_all(transport, &self.commands(decision)).await.map(|()| Applied::plain())
    }

    /// The group, then the account, with the other short commands of the wave.
    async fn stage(&self, decision: &Decision) -> Result<Option<Staged>, ApplyError> {
        Ok(Some(Staged::commands(self.commands(decision))))
    }
}

impl DesiredUser {
    /// The commands carrying out `decision`: make the primary group if missing, then add or
    /// change the account.
    fn commands(&self, decision: &Decision) -> Vec<Vec<String>> {
        let system = if self.system { "system" } else { "" };
        let group = argv(&["sh", "-c", GROUP_SCRIPT, "cairn-group", &self.group, system]);
        let changed = |name: &str| decision.attrs.iter().find(|a| a.name == name).and_then(|a| a.after.clone());
        let mut cmd: Vec<String> = Vec::new();
        if decision.action == Action::Create {
            cmd.push("useradd".into());
            if self.system {
                cmd.push("--system".into());
            }
            cmd.extend(["--gid".into(), self.group.clone()]);
            if let Some(uid) = self.uid {
                cmd.extend(["--uid".into(), uid.to_string()]);
            }
            if let Some(h) = &self.home {
                cmd.extend(["--home-dir".into(), h.clone()]);
            }
            if let Some(s) = &self.shell {
                cmd.extend(["--shell".into(), s.clone()]);
            }
            if !self.groups.is_empty() {
                cmd.extend(["--groups".into(), self.groups.join(",")]);
            }
        } else {
            cmd.push("usermod".into());
            if let Some(uid) = changed("uid") {
                cmd.extend(["--uid".into(), uid]);
            }
            if changed("group").is_some() {
                cmd.extend(["--gid".into(), self.group.clone()]);
            }
            if let Some(h) = changed("home") {
                cmd.extend(["--home".into(), h]);
            }
            if let Some(s) = changed("shell") {
                cmd.extend(["--shell".into(), s]);
            }
            if let Some(g) = changed("groups") {
                cmd.extend(["--append".into(), "--groups".into(), g]);
            }
        }
        cmd.extend(["--".into(), self.name.clone()]);
        vec![group, cmd]
    }
}

/// A gid as a group name when the probe saw it, else the number.
fn gid_name(facts: &HostFacts, gid: u32) -> String {
    facts.groups.iter().find(|(_, g)| g.gid == gid).map_or_else(|| gid.to_string(), |(n, _)| n.clone())
}

/// An account leaves with the spec only when `remove = true`; its home is kept.
#[async_trait::async_trait]
impl Removal for OwnedUser {
    fn rank(&self) -> u8 {
        4
    }

    fn adopted_by(&self, claims: &Claims, _claimed_all: Option<&str>) -> Option<String> {
        claims.users.get(&self.name).cloned()
    }

    fn add_to_probe(&self, _orphan: &Orphan, probe: &mut ProbeRequest) {
        if self.remove {
            probe.users.insert(self.name.clone());
        }
    }

    fn diff(&self, _orphan: &Orphan, facts: &HostFacts) -> Decision {
        let name = &self.name;
        match (self.remove, facts.users.contains_key(name)) {
            (false, _) => Decision::noop(format!("account {name} kept (set remove = true to delete accounts)")),
            (true, false) => Decision::noop("already absent"),
            (true, true) => Decision::new(Action::Delete, format!("delete account {name} (its home is kept)")),
        }
    }

    async fn apply(&self, _orphan: &Orphan, transport: &dyn Transport, _decision: &Decision) -> Result<(), ApplyError> {
        run_checked(transport, &argv(&["userdel", "--", &self.name])).await
    }

    fn target(&self, _paths: &[&str]) -> String {
        format!("user {}", self.name)
    }
}

/// Parses `getent passwd` lines (`name:x:uid:gid:gecos:home:shell`). Pure.
pub fn parse_passwd(lines: &[&str]) -> Result<BTreeMap<String, UserFact>, ProbeError> {
    let mut users = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(':').collect();
        let [name, _, uid, gid, _, home, shell] = f.as_slice() else { return Err(ProbeError::unexpected("passwd line", line)) };
        let num = |s: &str| s.parse::<u32>().map_err(|_| ProbeError::bad("id in passwd line", line));
        users.insert(
            (*name).to_string(),
            UserFact { uid: num(uid)?, gid: num(gid)?, home: (*home).to_string(), shell: (*shell).to_string() },
        );
    }
    Ok(users)
}

/// Parses `getent group` lines (`name:x:gid:member,member`). Pure.
pub fn parse_group(lines: &[&str]) -> Result<BTreeMap<String, GroupFact>, ProbeError> {
    let mut groups = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(':').collect();
        let [name, _, gid, members] = f.as_slice() else { return Err(ProbeError::unexpected("group line", line)) };
        let gid = gid.parse::<u32>().map_err(|_| ProbeError::bad("gid in group line", line))?;
        let members = members.split(',').filter(|m| !m.is_empty()).map(str::to_string).collect();
        groups.insert((*name).to_string(), GroupFact { gid, members });
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredUser {
        DesiredUser {
            name: "etcd".into(),
            group: "etcd".into(),
            system: true,
            uid: None,
            home: Some("/var/lib/etcd".into()),
            shell: Some("/usr/sbin/nologin".into()),
            groups: vec!["ssl-cert".into()],
            remove: false,
        }
    }

    fn facts(passwd: &[&str], group: &[&str]) -> HostFacts {
        HostFacts { users: parse_passwd(passwd).unwrap(), groups: parse_group(group).unwrap(), ..Default::default() }
    }

    #[test]
    fn parses_getent_output() {
        let users = parse_passwd(&["etcd:x:998:997::/var/lib/etcd:/usr/sbin/nologin"]).unwrap();
        assert_eq!(users["etcd"], UserFact { uid: 998, gid: 997, home: "/var/lib/etcd".into(), shell: "/usr/sbin/nologin".into() });
        let groups = parse_group(&["ssl-cert:x:110:etcd,www-data", "etcd:x:997:"]).unwrap();
        assert_eq!(groups["ssl-cert"].members, vec!["etcd", "www-data"]);
        assert!(groups["etcd"].members.is_empty());
        assert!(parse_passwd(&["broken"]).is_err());
        assert!(parse_group(&["a:x:notanumber:"]).is_err());
    }

    #[test]
    fn missing_user_and_group_are_created() {
        let d = desired().diff(&facts(&[], &["ssl-cert:x:110:"]));
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Create, "user and group do not exist"));
        let d = desired().diff(&facts(&[], &["etcd:x:997:", "ssl-cert:x:110:"]));
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Create, "user does not exist"));
    }

    #[test]
    fn matching_user_is_a_noop() {
        let d =
            desired().diff(&facts(&["etcd:x:998:997::/var/lib/etcd:/usr/sbin/nologin"], &["etcd:x:997:", "ssl-cert:x:110:www-data,etcd"]));
        assert_eq!(d, Decision::noop("user exists as specified"));
    }

    #[test]
    fn drift_is_reported_per_attribute() {
        let mut want = desired();
        want.uid = Some(900);
        let d = want.diff(&facts(&["etcd:x:998:0::/home/etcd:/bin/bash"], &["etcd:x:997:", "root:x:0:", "ssl-cert:x:110:"]));
        assert_eq!(d.action, Action::Update);
        assert_eq!(d.reason.to_string(), "uid differs, primary group differs, home differs, shell differs, not in group ssl-cert");
        let group = d.attrs.iter().find(|a| a.name == "group").unwrap();
        assert_eq!((group.before.as_deref(), group.after.as_deref()), (Some("root"), Some("etcd")));
    }

    #[test]
    fn missing_primary_group_is_reported() {
        let d = desired().diff(&facts(&["etcd:x:998:50::/var/lib/etcd:/usr/sbin/nologin"], &["ssl-cert:x:110:etcd"]));
        assert_eq!((d.action, d.reason.to_string().as_str()), (Action::Update, "group etcd does not exist"));
    }

    #[test]
    fn unset_attributes_are_not_managed() {
        let want = DesiredUser {
            name: "app".into(),
            group: "app".into(),
            system: false,
            uid: None,
            home: None,
            shell: None,
            groups: vec![],
            remove: false,
        };
        assert_eq!(want.diff(&facts(&["app:x:1000:1000::/home/app:/bin/sh"], &["app:x:1000:"])).action, Action::NoOp);
    }
}
