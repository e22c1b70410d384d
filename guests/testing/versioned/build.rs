//! Copies the WIT package to `$OUT_DIR/wit` with keyword-named cases
//! escaped; see `dialtone_sdk::wit_compat`.

fn main() {
    dialtone_sdk::wit_compat::build_script("../../../wit");
}
