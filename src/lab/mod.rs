//! `cairn lab`: local Debian test hosts (systemd-nspawn containers with sshd on a private bridge).
