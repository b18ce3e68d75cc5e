//! What `realserver --status` says about the TOA reader. Pure: the facts
//! are read by `pins::read_status`.
use std::fmt::Write;
use std::path::PathBuf;

use ipnet::Ipv4Net;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToaStatus {
    pub pin_dir: PathBuf,
    /// The cgroup the programs are attached to, as given at install.
    pub cgroup: String,
    /// The pinned links (one per attached program).
    pub hooks: Vec<String>,
    pub trusted: Vec<Ipv4Net>,
    /// Connections whose peer is now the client (summed over CPUs).
    pub translated: u64,
    /// TOA options ignored because the SYN came from no trusted director.
    pub untrusted: u64,
    /// Connections with no saved SYN: their listener was opened before
    /// the reader was installed (restart the server to cover it).
    pub no_saved_syn: u64,
}

/// The status text; `None` is "not installed".
pub fn render(status: Option<&ToaStatus>, pin_dir: &std::path::Path) -> String {
    let Some(s) = status else {
        return format!(
            "TOA reader: not installed (nothing pinned at {})\n",
            pin_dir.display()
        );
    };
    let trusted: Vec<String> = s.trusted.iter().map(|n| n.to_string()).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "TOA reader: installed (pinned at {})",
        s.pin_dir.display()
    );
    let _ = writeln!(out, "  cgroup:               {}", s.cgroup);
    let _ = writeln!(out, "  hooks:                {}", s.hooks.join(", "));
    let _ = writeln!(
        out,
        "  trusted directors:    {}",
        if trusted.is_empty() {
            "none (no option is believed)".to_string()
        } else {
            trusted.join(", ")
        }
    );
    let _ = writeln!(out, "  translated:           {}", s.translated);
    let _ = writeln!(out, "  ignored (untrusted):  {}", s.untrusted);
    let _ = write!(out, "  no saved SYN:         {}", s.no_saved_syn);
    if s.no_saved_syn > 0 {
        out.push_str(" (listeners opened before the install: restart those servers)");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn not_installed_says_where_it_looked() {
        assert_eq!(
            render(None, Path::new("/sys/fs/bpf/ballast/toa")),
            "TOA reader: not installed (nothing pinned at /sys/fs/bpf/ballast/toa)\n"
        );
    }

    #[test]
    fn installed_shows_cgroup_directors_and_counters() {
        let s = ToaStatus {
            pin_dir: "/sys/fs/bpf/ballast/toa".into(),
            cgroup: "/sys/fs/cgroup".into(),
            hooks: vec![
                "sockops".into(),
                "getpeername4".into(),
                "getpeername6".into(),
            ],
            trusted: vec![
                "10.0.0.0/24".parse().unwrap(),
                "10.1.0.7/32".parse().unwrap(),
            ],
            translated: 12,
            untrusted: 1,
            no_saved_syn: 2,
        };
        assert_eq!(
            render(Some(&s), Path::new("/unused")),
            "TOA reader: installed (pinned at /sys/fs/bpf/ballast/toa)\n\
             \x20 cgroup:               /sys/fs/cgroup\n\
             \x20 hooks:                sockops, getpeername4, getpeername6\n\
             \x20 trusted directors:    10.0.0.0/24, 10.1.0.7/32\n\
             \x20 translated:           12\n\
             \x20 ignored (untrusted):  1\n\
             \x20 no saved SYN:         2 (listeners opened before the install: restart those servers)\n"
        );
    }
}
