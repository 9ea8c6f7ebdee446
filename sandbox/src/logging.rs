//! The sandbox daemon's log: one line on stderr per event, stamped with Unix seconds and
//! milliseconds (the front's stderr is `logs/front.log`). Below every module that logs, so none
//! of them has to reach up into the front for it.

pub fn log(msg: &str) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!("[{}.{:03}] {msg}", t.as_secs(), t.subsec_millis());
}
