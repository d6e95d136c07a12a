//! IPAM consistency checks (see `calicoctl ipam check`).
