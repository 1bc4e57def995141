//! The `evoctl` binary: everything happens in [`evoctl::main_entry`].

fn main() -> std::process::ExitCode {
    evoctl::main_entry()
}
