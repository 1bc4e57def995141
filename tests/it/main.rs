//! Integration tests: the real `evoctl` binary against the lab (started on port 0), and the
//! lab against clients nobody here wrote (the AWS CLI, moto for comparison).

mod awscli;
mod cli;
mod config;
mod conflicts;
mod connect;
mod doctor;
mod exec;
mod guard;
mod instance;
mod lab;
mod moto;
mod plugin;
mod qr;
mod shell;
mod status;
mod support;
