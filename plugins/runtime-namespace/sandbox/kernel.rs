//! The kernel's structures that both ways of building the sandbox pass to
//! system calls: `src/child.rs` (in a fork of berth) and `berth-sandbox`
//! (`sandbox/main.rs`) include this file.

/// `struct mount_attr` for `mount_setattr(2)`.
#[repr(C)]
pub(crate) struct MountAttr {
    pub(crate) attr_set: u64,
    pub(crate) attr_clr: u64,
    pub(crate) propagation: u64,
    pub(crate) userns_fd: u64,
}

/// The flags part of `struct ifreq` (40 bytes on Linux): the interface's
/// name (`IFNAMSIZ` bytes), its flags, and the rest of the union.
#[repr(C)]
pub(crate) struct InterfaceFlags {
    pub(crate) name: [u8; 16],
    pub(crate) flags: i16,
    pub(crate) _rest: [u8; 22],
}
