//! dialtone ctl.
