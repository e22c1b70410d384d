//! Rebuilds the component when the WIT package changes (`generate!` alone
//! does not tell cargo about the files it reads).

fn main() {
    println!("cargo:rerun-if-changed=../../wit");
}
