// Fiber context switch for the stand-in (x86-64 System V): one CUDA thread
// is one fiber; a switch saves the callee-saved registers, the SSE control
// word and the x87 control word on the current stack, stores the stack
// pointer and loads another. No signal mask, no system call: ucontext's
// swapcontext costs a sigprocmask per switch and is several times slower.
//
//   void emu_fiber_switch(void** save_sp, void* load_sp);
//   emu_fiber_start: first frame of a new fiber; calls r13(r12), never returns.

    .text
    .globl emu_fiber_switch
    .hidden emu_fiber_switch
    .type emu_fiber_switch, @function
emu_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_fiber_switch, .-emu_fiber_switch

    .globl emu_fiber_start
    .hidden emu_fiber_start
    .type emu_fiber_start, @function
emu_fiber_start:
    movq %r12, %rdi
    andq $-16, %rsp
    callq *%r13
    ud2
    .size emu_fiber_start, .-emu_fiber_start

    .section .note.GNU-stack,"",@progbits
