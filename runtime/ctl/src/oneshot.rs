//! One-shot mode: `dialtone ctl -x CMD [-x CMD]...`.
//!
//! Owns running each command as `api` over one connection, in order, printing
//! each reply body to `out` (with one trailing line break), and the exit
//! code: 0, or 1 when any reply starts with `-ERR` or the connection fails
//! (the error goes to `err`, and later commands are not run).

use std::io::Write;

use crate::client::EslClient;

pub(crate) fn run(args: &crate::CtlArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(err, "dialtone ctl: cannot start the runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async {
        let mut client =
            match EslClient::connect(&args.host, args.port, &args.password, args.timeout()).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = writeln!(err, "dialtone ctl: {e:#}");
                    return 1;
                }
            };
        let mut code = 0;
        for cmd in &args.execute {
            match client.api(cmd).await {
                Ok(body) => {
                    if body.trim_start().starts_with("-ERR") {
                        code = 1;
                    }
                    let _ = out.write_all(crate::format::format_reply(&body, false).as_bytes());
                    let _ = out.flush();
                }
                Err(e) => {
                    let _ = writeln!(err, "dialtone ctl: {cmd}: {e:#}");
                    return 1;
                }
            }
        }
        // Say goodbye, but do not fail or wait long over it.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), client.exit()).await;
        code
    })
}
