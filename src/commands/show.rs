use std::path::Path;

use super::{Error, exit};
use crate::cli::ShowArgs;
use crate::render::{self, Shell};

/// `show FILE`: a saved plan as `plan` printed it (text, or `--json`), read as `apply FILE`
/// reads it (size, kind and format checked) but with no spec, no AWS and no node: a plan
/// file can be reviewed anywhere (a CI artifact, a pull request).
pub fn run(args: &ShowArgs, shell: &Shell) -> Result<u8, Error> {
    let saved = crate::workflow::read_saved(Path::new(&args.file))?;
    if !args.json {
        shell.out(&format!(
            "Plan file {} (saved by redisctl {}, plan format {}); apply it with: redisctl apply {}\n\n",
            args.file.display(),
            saved.redisctl_version,
            saved.format_version,
            args.file.display()
        ));
    }
    render::plan::show(shell, &saved.plan, args.json);
    Ok(exit::OK)
}
