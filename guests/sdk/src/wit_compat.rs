//! Build-script support: a parseable copy of the WIT package.
//!
//! `wit/types.wit` names two `action` cases `export` and `record`. Both are
//! WIT keywords, and every WIT parser (wit-bindgen 0.63, wasm-tools 1.262,
//! wasmtime 48's `bindgen!`) rejects them unless they are written `%export`
//! and `%record`. The `%` changes nothing in the component's types: the
//! cases are still called `export` and `record`, and the generated Rust
//! names are still `Action::Export` and `Action::Record`.
//!
//! Until the package itself is fixed, each guest's `build.rs` calls
//! [`build_script`], which copies the package to `$OUT_DIR/wit` with such
//! names escaped, and the guest points `wit_bindgen::generate!` at that copy
//! (`path: concat!(env!("OUT_DIR"), "/wit")`). On a package that is already
//! escaped the copy is identical, so this keeps working after the fix and
//! can then be deleted.
//!
//! Only the form the package uses is handled: a line that *starts* with a
//! declaration keyword immediately followed by `(`, `,` or `:` (a variant or
//! enum case, a record field, a parameter on its own line).

use std::borrow::Cow;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// WIT declaration keywords that may not name a case, field or parameter
/// without a `%`. (Type keywords such as `string` or `result` are left out:
/// they can legitimately start a line inside a multi-line type.)
pub const KEYWORDS: [&str; 20] = [
    "as",
    "async",
    "constructor",
    "enum",
    "export",
    "flags",
    "from",
    "func",
    "import",
    "include",
    "interface",
    "package",
    "record",
    "resource",
    "static",
    "type",
    "use",
    "variant",
    "with",
    "world",
];

/// Escape, with `%`, every keyword that starts a line as a case, field or
/// parameter name. Text that needs nothing is returned as is.
///
/// ```
/// use dialtone_sdk::wit_compat::escape_keyword_names;
/// assert_eq!(
///     escape_keyword_names("variant a {\n    export(variable),\n    set(variable),\n}\n"),
///     "variant a {\n    %export(variable),\n    set(variable),\n}\n"
/// );
/// assert_eq!(escape_keyword_names("world w {\n  export router;\n}"), "world w {\n  export router;\n}");
/// ```
pub fn escape_keyword_names(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut changed = false;
    for line in text.split_inclusive('\n') {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let word_len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(body.len());
        let (word, rest) = body.split_at(word_len);
        let is_name = KEYWORDS.contains(&word) && rest.trim_start().starts_with(['(', ',', ':']);
        out.push_str(indent);
        if is_name {
            out.push('%');
            changed = true;
        }
        out.push_str(body);
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// Copy every `*.wit` file of the directory `src` into `dst` (created if
/// missing), escaped with [`escape_keyword_names`]. Returns the files read.
pub fn escaped_copy(src: &Path, dst: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dst)?;
    let mut read = Vec::new();
    for entry in fs::read_dir(src)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wit") && path.is_file() {
            let text = fs::read_to_string(&path)?;
            let name = path.file_name().unwrap_or_default();
            fs::write(dst.join(name), escape_keyword_names(&text).as_bytes())?;
            read.push(path);
        }
    }
    if read.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no .wit files in {}", src.display()),
        ));
    }
    read.sort();
    Ok(read)
}

/// The whole job of a guest's `build.rs`: copy the WIT package at
/// `wit_dir` (relative to the crate's manifest directory) to
/// `$OUT_DIR/wit`, escaped, and tell cargo to run again when it changes.
///
/// # Panics
///
/// When cargo's `CARGO_MANIFEST_DIR` or `OUT_DIR` is missing or the copy
/// fails: a build script reports errors by panicking.
pub fn build_script(wit_dir: &str) {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    let src = Path::new(&manifest).join(wit_dir);
    let dst = Path::new(&out).join("wit");
    println!("cargo:rerun-if-changed={}", src.display());
    let files = escaped_copy(&src, &dst)
        .unwrap_or_else(|e| panic!("copying the WIT package {}: {e}", src.display()));
    for file in files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_only_names() {
        let wit = "\
interface types {
    record r {
        %from: string,
        type: u32,
    }
    variant action {
        /// export a variable
        export(variable),
        %export(variable),
        record (record-spec),
        hangup(hangup-cause),
        use,
    }
    use types.{variable};
    enum e { a, b }
    f: func(
        from: string,
        list: list<u8>,
    ) -> result<
        string,
        string>;
}
world w {
    export router;
    import host;
    export dialtone:switch/helpers@0.1.0;
}
";
        let want = wit
            .replace("        type: u32", "        %type: u32")
            .replace("        export(variable)", "        %export(variable)")
            .replace("        record (", "        %record (")
            .replace("        use,", "        %use,")
            .replace(
                "        from: string,\n        list",
                "        %from: string,\n        list",
            );
        assert_eq!(escape_keyword_names(wit), want);
        // Idempotent, and borrowed when nothing changes.
        assert!(matches!(escape_keyword_names(&want), Cow::Borrowed(_)));
    }

    #[test]
    fn the_real_package_gets_its_two_escapes() {
        let types = include_str!("../../../wit/types.wit");
        let escaped = escape_keyword_names(types);
        assert!(escaped.contains("%export(variable),"));
        assert!(escaped.contains("%record(record-spec),"));
        let changed: Vec<_> = types
            .lines()
            .zip(escaped.lines())
            .filter(|(a, b)| a != b)
            .map(|(_, b)| b.trim())
            .collect();
        assert!(changed.len() <= 2, "{changed:?}");
    }

    #[test]
    fn copy_reads_every_wit_file() {
        let dir = std::env::temp_dir().join(format!("dialtone-sdk-wit-{}", std::process::id()));
        let src = dir.join("src");
        let dst = dir.join("dst");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("a.wit"), "variant v {\n  export(u32),\n}\n").unwrap();
        fs::write(src.join("notes.txt"), "export(x)").unwrap();
        let read = escaped_copy(&src, &dst).unwrap();
        assert_eq!(read, vec![src.join("a.wit")]);
        assert_eq!(
            fs::read_to_string(dst.join("a.wit")).unwrap(),
            "variant v {\n  %export(u32),\n}\n"
        );
        assert!(!dst.join("notes.txt").exists());
        assert!(escaped_copy(&dst.join("nothing"), &dst).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
