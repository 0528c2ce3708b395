/*
 * lp-stub - the tiny process the restorer spawns, seizes with ptrace and
 * rebuilds into the migrated process.
 *
 * Built static, without libc, as ONE read+exec PT_LOAD segment (ELF headers
 * + .text, no data/bss) linked at 0x10000000000 (1 TiB), see the Makefile:
 *     -nostdlib -static -fno-pie -no-pie -Wl,-Ttext-segment=0x10000000000
 *     -Wl,-z,noseparate-code -Wl,--build-id=none -Wl,-z,noexecstack
 * At run time /proc/PID/maps shows only
 *     10000000000-10000001000 r-xp ... /path/to/lp-stub
 * plus the kernel's [stack], [vvar], [vdso] (and [vsyscall] if enabled).
 *
 * Layout of .text (this file is the only object, so source order is link
 * order; .text starts right after the ELF file header + 2 program headers,
 * 64 + 2*56 = 0xb0 bytes):
 *     0x100000000b0  lp_gadget:  0f 05   syscall
 *     0x100000000b2              cc      int3
 *     0x100000000b3  _start:     mov $34,%eax ; syscall ; jmp _start
 *
 * The restorer injects system calls by setting rip = lp_gadget and the
 * registers (rax = nr, rdi, rsi, rdx, r10, r8, r9), then PTRACE_CONT: the
 * syscall runs and the int3 stops the tracee with SIGTRAP, rax = result.
 * The exact addresses are written by the Makefile to $(OUT)/lp-stub.info:
 *     gadget=0x...      address of the 0f 05 cc bytes
 *     entry=0x...       ELF entry (_start)
 *     text_start=0x...  start of the text mapping (page aligned)
 *     text_end=0x...    end of the text mapping (page aligned, exclusive)
 *
 * _start first sets alarm(10) (syscall 37), then loops forever on pause()
 * (syscall 34), so a freshly spawned stub sleeps in pause until it is seized
 * (check /proc/PID/syscall: "34 ..."). The restorer cancels the alarm (an
 * injected alarm(0)) right after seizing; a stub nobody seizes (its restorer
 * died between spawning and seizing it) dies of SIGALRM after 10 s instead of
 * pausing forever. It never touches the stack and needs no initialisation.
 */
	.text
	.globl	lp_gadget
	.type	lp_gadget, @function
lp_gadget:
	syscall			/* 0f 05 */
	int3			/* cc    */
	.size	lp_gadget, . - lp_gadget

	.globl	_start
	.type	_start, @function
_start:
	movl	$37, %eax	/* __NR_alarm */
	movl	$10, %edi	/* seconds */
	syscall
1:	movl	$34, %eax	/* __NR_pause */
	syscall
	jmp	1b
	.size	_start, . - _start

	/* no executable stack */
	.section .note.GNU-stack, "", @progbits
