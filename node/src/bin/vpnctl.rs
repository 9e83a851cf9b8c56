//! `vpnctl`: Junos operational commands against a running `vpnd`, over the management
//! API (gRPC, mutual TLS). The CLI itself is [`node::vpnctl`], which `vpnd cli` runs
//! as well.

fn main() -> std::process::ExitCode {
    node::vpnctl::main("vpnctl", std::env::args_os())
}
