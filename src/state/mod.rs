//! State cairn keeps. Locally, beside the spec (`state_dir`, default `.cairn/`): the PKI store of
//! generated certificate authorities ([`pki`]). (The host-side manifest of managed resources and
//! the per-host apply lock will live here too.)

pub mod pki;
