//! `loadtest`: the load generator (default mode, [`load`]) and the fault-injection harness
//! (`loadtest chaos ...`, [`chaos`]).

mod chaos;
mod load;

fn main() -> anyhow::Result<()> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "chaos") {
        // `loadtest chaos ARGS`: parse ARGS as the chaos command (program name "loadtest chaos").
        let mut rest = vec![std::ffi::OsString::from("loadtest chaos")];
        rest.extend(argv.into_iter().skip(2));
        let code = match chaos::main(rest) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("loadtest chaos: {e:#}");
                2
            }
        };
        std::process::exit(code);
    }
    load::main(argv)
}
