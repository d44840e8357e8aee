//! The run-time of berth's small static programs (`berth-keeper`, and the
//! `namespace` plugin's `berth-sandbox`, which includes this file too): the
//! system call instruction, the entry point that hands `argc`, `argv` and
//! the environment to the program's `main`, the memory functions the
//! compiler calls, and the end of the process. No C library is linked.

use core::ffi::{c_char, c_int};

use crate::abi::SYS_EXIT_GROUP;

/// The system calls, each returning the kernel's result: a value, or
/// `-errno`.
pub(crate) mod sys {
    use core::arch::asm;

    /// Makes system call `number` with six arguments (unused ones are
    /// ignored by the kernel).
    ///
    /// # Safety
    ///
    /// The arguments must be what the system call expects.
    #[inline(always)]
    pub unsafe fn call(number: usize, args: [usize; 6]) -> isize {
        let result: isize;
        // SAFETY: the caller passes the call's arguments; the kernel
        // clobbers only what is declared.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") number as isize => result,
                in("rdi") args[0],
                in("rsi") args[1],
                in("rdx") args[2],
                in("r10") args[3],
                in("r8") args[4],
                in("r9") args[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        // SAFETY: as above.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            asm!(
                "svc 0",
                in("x8") number,
                inlateout("x0") args[0] as isize => result,
                in("x1") args[1],
                in("x2") args[2],
                in("x3") args[3],
                in("x4") args[4],
                in("x5") args[5],
                options(nostack),
            );
        }
        result
    }
}

/// System call `number` with up to six arguments.
macro_rules! syscall {
    ($number:expr $(, $arg:expr)* $(,)?) => {{
        let mut args = [0usize; 6];
        let given = [$($arg as usize),*];
        args[..given.len()].copy_from_slice(&given);
        // SAFETY: every use passes the arguments its call expects: plain
        // integers, or pointers to live, initialised values of the kernel's
        // layout.
        unsafe { $crate::rt::sys::call($number, args) }
    }};
}

/// The program's entry point: the stack holds `argc`, the `argv`
/// pointers, a null, the environment's pointers, a null.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {entry}",
        "ud2",
        entry = sym entry,
    )
}

/// As above, for aarch64 (whose stack pointer is 16-byte aligned already).
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "mov x29, xzr",
        "mov x30, xzr",
        "mov x0, sp",
        "bl {entry}",
        "brk #0",
        entry = sym entry,
    )
}

/// Reads `argc`, `argv` and the environment from the initial stack.
///
/// # Safety
///
/// `stack` must be the stack pointer the kernel started the program with.
unsafe extern "C" fn entry(stack: *const usize) -> ! {
    // SAFETY: the kernel's initial stack layout, as described above.
    let (argc, argv, envp) = unsafe {
        let argc = *stack;
        let argv = stack.add(1).cast::<*const c_char>();
        (argc, argv, argv.add(argc + 1))
    };
    crate::main(argc, argv, envp)
}

// The memory functions the compiler calls for copies and fills: there is
// no C library to provide them.

/// # Safety
///
/// As C's `memcpy`.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: as C's memcpy: both ranges valid, not overlapping.
    unsafe {
        for i in 0..n {
            *dest.add(i) = *src.add(i);
        }
    }
    dest
}

/// # Safety
///
/// As C's `memmove`.
#[unsafe(no_mangle)]
unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: as C's memmove: both ranges valid; copying in the direction
    // that reads each byte before it is overwritten.
    unsafe {
        if (dest as usize) < (src as usize) {
            for i in 0..n {
                *dest.add(i) = *src.add(i);
            }
        } else {
            for i in (0..n).rev() {
                *dest.add(i) = *src.add(i);
            }
        }
    }
    dest
}

/// # Safety
///
/// As C's `memset`.
#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dest: *mut u8, byte: c_int, n: usize) -> *mut u8 {
    // SAFETY: as C's memset: the range is valid.
    unsafe {
        for i in 0..n {
            *dest.add(i) = byte as u8;
        }
    }
    dest
}

/// # Safety
///
/// As C's `memcmp`.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    // SAFETY: as C's memcmp: both ranges valid.
    unsafe {
        for i in 0..n {
            let (x, y) = (*a.add(i), *b.add(i));
            if x != y {
                return c_int::from(x) - c_int::from(y);
            }
        }
    }
    0
}

/// # Safety
///
/// As C's `bcmp`.
#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    // SAFETY: as above.
    unsafe { memcmp(a, b, n) }
}

/// Ends this process.
pub(crate) fn exit(code: c_int) -> ! {
    loop {
        syscall!(SYS_EXIT_GROUP, code);
    }
}

/// The kernel's signal set.
pub(crate) type SigSet = u64;

/// The bit of `signal` in a [`SigSet`].
pub(crate) const fn bit(signal: c_int) -> SigSet {
    1 << (signal - 1)
}

/// Waits for child `pid` to end: its wait status, or `None` when it is not
/// (or no longer) a child of this process.
pub(crate) fn wait_for(pid: isize) -> Option<c_int> {
    let mut status: c_int = 0;
    loop {
        let reaped = syscall!(
            crate::abi::SYS_WAIT4,
            pid,
            &mut status as *mut c_int,
            0,
            0
        );
        if reaped == pid {
            return Some(status);
        }
        if reaped != -(crate::abi::EINTR as isize) {
            return None;
        }
    }
}

/// Sets `signal`'s action to `handler` (`SIG_DFL` or `SIG_IGN`).
pub(crate) fn set_action(signal: c_int, handler: usize) -> isize {
    let action = crate::abi::KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    syscall!(
        crate::abi::SYS_RT_SIGACTION,
        signal,
        &action as *const crate::abi::KernelSigaction,
        0,
        crate::abi::SIGSET_BYTES
    )
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    exit(127)
}

/// The number in a NUL-terminated decimal string; `None` for `-`.
///
/// # Safety
///
/// `text` must point to a NUL-terminated string.
pub(crate) unsafe fn number(text: *const c_char) -> Option<u64> {
    let mut value: u64 = 0;
    let mut at = text;
    let mut digits = false;
    // SAFETY: the caller promises a NUL-terminated string; reading stops at
    // the NUL.
    unsafe {
        while *at != 0 {
            let byte = *at as u8;
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value
                .saturating_mul(10)
                .saturating_add(u64::from(byte - b'0'));
            digits = true;
            at = at.add(1);
        }
    }
    digits.then_some(value)
}
