//! Integration tests: the real `evoctl` binary against the lab (started on port 0), and the
//! lab against clients nobody here wrote (the AWS CLI, moto for comparison).

mod accounts;
mod awscli;
mod awsconfig;
mod badinput;
mod cli;
mod config;
mod conflicts;
mod connect;
mod delivery;
mod discover;
mod doctor;
mod ending;
mod evolution;
mod evolution_replay;
mod exec;
mod external_evolution;
mod faults;
mod guard;
mod instance;
mod invariants;
mod kms;
mod lab;
mod logs;
mod moto;
mod pipes;
mod plugin;
mod proxy;
mod qr;
mod secrets;
mod shell;
mod slots;
mod status;
mod support;
mod tls;
mod webhook_probe;
