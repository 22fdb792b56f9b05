//! The `ssh` transport (to be written): openssh native mux, one master per host.
