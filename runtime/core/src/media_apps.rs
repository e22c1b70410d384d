//! The parts of the media applications (`playback`, `echo`, `collect`,
//! `record`) that are decisions rather than I/O: which file a tenant may
//! name, and when digit collection is complete. The channel task in
//! [`crate::switch`] drives them; the endpoint's
//! [`ChannelMedia`](crate::endpoint::ChannelMedia) moves the audio.

use std::path::{Component, Path, PathBuf};

use crate::routing::CollectSpec;

/// Why a tenant's file name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    /// The switch has no directory configured for this kind of file.
    #[error("no {0} directory is configured")]
    NotConfigured(&'static str),
    /// The name is absolute, empty, or climbs out with `..`.
    #[error("`{0}` is not a relative path inside the tenant's directory")]
    Outside(String),
    /// The tenant name itself cannot be a directory name.
    #[error("tenant `{0}` has no directory of its own")]
    BadTenant(String),
}

/// The tenant's own directory under `base`: `base/<tenant>`.
pub fn tenant_dir(base: &Path, tenant: &str) -> Result<PathBuf, PathRefused> {
    let mut c = Path::new(tenant).components();
    match (c.next(), c.next()) {
        (Some(Component::Normal(_)), None) if !tenant.starts_with('.') => Ok(base.join(tenant)),
        _ => Err(PathRefused::BadTenant(tenant.to_string())),
    }
}

/// Resolves `name` inside `base/<tenant>/`, refusing anything that leaves
/// it: absolute paths, `..`, and (for files that exist) symbolic links that
/// point elsewhere. `kind` names the directory in errors (`sounds`,
/// `recordings`).
pub fn confine(
    base: Option<&Path>,
    kind: &'static str,
    tenant: &str,
    name: &str,
) -> Result<PathBuf, PathRefused> {
    let base = base.ok_or(PathRefused::NotConfigured(kind))?;
    let dir = tenant_dir(base, tenant)?;
    let rel = Path::new(name);
    let outside = || PathRefused::Outside(name.to_string());
    if name.is_empty()
        || !rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(outside());
    }
    let path = dir.join(rel);
    // A link inside the directory must not lead out of it.
    if let (Ok(real), Ok(real_dir)) = (path.canonicalize(), dir.canonicalize()) {
        if !real.starts_with(&real_dir) {
            return Err(outside());
        }
    }
    Ok(path)
}

/// How digit collection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectEnd {
    /// `max_digits` reached.
    MaxDigits,
    /// A terminator digit was pressed.
    Terminated,
    /// No digit within the timeout.
    Timeout,
}

/// Digit collection for `collect`: feed digits, ask whether it is over,
/// read the result. Timing is the caller's (first-digit and inter-digit
/// timeouts both `spec.timeout_ms`, counted from the end of the prompt).
#[derive(Debug, Clone)]
pub struct Collector {
    spec: CollectSpec,
    digits: String,
    end: Option<CollectEnd>,
}

impl Collector {
    /// Starts collecting.
    pub fn new(spec: CollectSpec) -> Collector {
        Collector {
            spec,
            digits: String::new(),
            end: None,
        }
    }

    /// One digit; returns true once collection is over.
    pub fn digit(&mut self, d: char) -> bool {
        if self.end.is_some() {
            return true;
        }
        if self.spec.terminators.contains(d) {
            self.end = Some(CollectEnd::Terminated);
        } else {
            self.digits.push(d);
            if self.digits.len() >= self.spec.max_digits.max(1) as usize {
                self.end = Some(CollectEnd::MaxDigits);
            }
        }
        self.end.is_some()
    }

    /// The timeout passed with no digit.
    pub fn timeout(&mut self) {
        self.end.get_or_insert(CollectEnd::Timeout);
    }

    /// Whether any digit (terminators included) was pressed.
    pub fn started(&self) -> bool {
        !self.digits.is_empty() || self.end == Some(CollectEnd::Terminated)
    }

    /// How it ended, if it has.
    pub fn end(&self) -> Option<CollectEnd> {
        self.end
    }

    /// The variable's value: the digits when at least `min_digits` were
    /// collected, empty otherwise (FreeSWITCH's `play_and_get_digits`
    /// leaves invalid input out the same way).
    pub fn value(&self) -> &str {
        if self.digits.len() >= self.spec.min_digits as usize {
            &self.digits
        } else {
            ""
        }
    }

    /// The spec.
    pub fn spec(&self) -> &CollectSpec {
        &self.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: u8, max: u8, term: &str) -> CollectSpec {
        CollectSpec {
            prompt: None,
            variable: "v".into(),
            min_digits: min,
            max_digits: max,
            timeout_ms: 1000,
            terminators: term.into(),
        }
    }

    #[test]
    fn collection_ends_on_max_terminator_or_timeout() {
        let mut c = Collector::new(spec(1, 3, "#"));
        assert!(!c.digit('1'));
        assert!(!c.digit('2'));
        assert!(c.digit('3'));
        assert_eq!((c.end(), c.value()), (Some(CollectEnd::MaxDigits), "123"));
        let mut c = Collector::new(spec(2, 4, "#*"));
        assert!(!c.digit('7'));
        assert!(c.digit('*'));
        assert_eq!(c.end(), Some(CollectEnd::Terminated));
        assert_eq!(c.value(), "", "fewer than min_digits");
        let mut c = Collector::new(spec(1, 4, "#"));
        assert!(!c.started());
        c.timeout();
        assert_eq!((c.end(), c.value()), (Some(CollectEnd::Timeout), ""));
        let mut c = Collector::new(spec(1, 4, "#"));
        c.digit('5');
        c.timeout();
        assert_eq!(c.value(), "5");
    }

    #[test]
    fn tenant_files_stay_in_the_tenants_directory() {
        let base = tempdir();
        std::fs::create_dir_all(base.join("a.test/ivr")).unwrap();
        std::fs::create_dir_all(base.join("b.test")).unwrap();
        std::fs::write(base.join("b.test/secret.wav"), b"x").unwrap();
        let ok = confine(Some(&base), "sounds", "a.test", "ivr/welcome.wav").unwrap();
        assert_eq!(ok, base.join("a.test/ivr/welcome.wav"));
        for bad in [
            "../b.test/secret.wav",
            "/etc/passwd",
            "ivr/../../b.test/secret.wav",
            "",
        ] {
            assert_eq!(
                confine(Some(&base), "sounds", "a.test", bad),
                Err(PathRefused::Outside(bad.into())),
                "{bad}"
            );
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(base.join("b.test"), base.join("a.test/link")).unwrap();
            assert!(confine(Some(&base), "sounds", "a.test", "link/secret.wav").is_err());
        }
        assert!(matches!(
            confine(Some(&base), "sounds", "..", "x.wav"),
            Err(PathRefused::BadTenant(_))
        ));
        assert_eq!(
            confine(None, "sounds", "a.test", "x.wav"),
            Err(PathRefused::NotConfigured("sounds"))
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "dialtone-confine-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
