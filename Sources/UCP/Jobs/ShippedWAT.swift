// The shipped jobs' WebAssembly text; see `ShippedJob`.
//
// Memory map shared by all of them (one 64 KiB page):
//   0..7     iovec {ptr, len}            8   bytes written      12  bytes read
//   16       argc                        20  argv buffer size   24  opened fd
//   32..63   number formatting (right-aligned, ends at 64)
//   64..1023 constant strings
//   1024     argv pointers (at most 256) 2048..10239 argv strings (at most 8 KiB)
//   32768..65535 I/O buffer
// The first pre-opened folder (the job's data folder, "/") is fd 3.

enum ShippedWAT {
    static let importWrite = #"""
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
        """#
    static let importRead = #"""
          (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
        """#
    static let importArgs = #"""
          (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
        """#
    static let importOpen = #"""
          (import "wasi_snapshot_preview1" "path_open"
            (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
        """#
    static let importExit = #"""
          (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
        """#

    /// $write (fd, ptr, len) -> errno: writes everything, looping on short writes.
    /// $print_u64 (fd, n) and $print_i64 (fd, n): decimal.
    static let helpersWrite = #"""
          (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
            (local $err i32) (local $n i32)
            (block $done
              (loop $more
                (br_if $done (i32.eqz (local.get $len)))
                (i32.store (i32.const 0) (local.get $ptr))
                (i32.store (i32.const 4) (local.get $len))
                (local.set $err (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
                (if (local.get $err) (then (return (local.get $err))))
                (local.set $n (i32.load (i32.const 8)))
                (if (i32.eqz (local.get $n)) (then (return (i32.const 29))))
                (local.set $ptr (i32.add (local.get $ptr) (local.get $n)))
                (local.set $len (i32.sub (local.get $len) (local.get $n)))
                (br $more)))
            (i32.const 0))
          (func $print_u64 (param $fd i32) (param $n i64)
            (local $pos i32)
            (local.set $pos (i32.const 64))
            (loop $digit
              (local.set $pos (i32.sub (local.get $pos) (i32.const 1)))
              (i32.store8 (local.get $pos)
                (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $n) (i64.const 10)))))
              (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
              (br_if $digit (i64.ne (local.get $n) (i64.const 0))))
            (drop (call $write (local.get $fd) (local.get $pos) (i32.sub (i32.const 64) (local.get $pos)))))
          (func $print_i64 (param $fd i32) (param $n i64)
            (if (i64.lt_s (local.get $n) (i64.const 0))
              (then
                (i32.store8 (i32.const 32) (i32.const 45))
                (drop (call $write (local.get $fd) (i32.const 32) (i32.const 1)))
                (local.set $n (i64.sub (i64.const 0) (local.get $n)))))
            (call $print_u64 (local.get $fd) (local.get $n)))
        """#

    /// $load_args -> argc (or -1 when there are too many); $arg (i) -> ptr; $strlen (ptr) -> len;
    /// $is_space (byte) -> bool.
    static let helpersArgs = #"""
          (func $load_args (result i32)
            (if (call $args_sizes_get (i32.const 16) (i32.const 20)) (then (return (i32.const -1))))
            (if (i32.gt_u (i32.load (i32.const 16)) (i32.const 256)) (then (return (i32.const -1))))
            (if (i32.gt_u (i32.load (i32.const 20)) (i32.const 8192)) (then (return (i32.const -1))))
            (if (call $args_get (i32.const 1024) (i32.const 2048)) (then (return (i32.const -1))))
            (i32.load (i32.const 16)))
          (func $arg (param $i i32) (result i32)
            (i32.load (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 2)))))
          (func $strlen (param $ptr i32) (result i32)
            (local $end i32)
            (local.set $end (local.get $ptr))
            (block $done
              (loop $more
                (br_if $done (i32.eqz (i32.load8_u (local.get $end))))
                (local.set $end (i32.add (local.get $end) (i32.const 1)))
                (br $more)))
            (i32.sub (local.get $end) (local.get $ptr)))
        """#

    static let helperSpace = #"""
          (func $is_space (param $c i32) (result i32)
            (i32.or
              (i32.eq (local.get $c) (i32.const 32))
              (i32.and (i32.ge_u (local.get $c) (i32.const 9)) (i32.le_u (local.get $c) (i32.const 13)))))
        """#

    /// $open_error (prefix, prefixLen, path, pathLen, errno): "<prefix><path>: errno N\n" on stderr, exit 1.
    static let helperOpenError = #"""
          (data (i32.const 960) ": errno ")
          (func $open_error (param $prefix i32) (param $plen i32) (param $path i32) (param $len i32) (param $err i32)
            (drop (call $write (i32.const 2) (local.get $prefix) (local.get $plen)))
            (drop (call $write (i32.const 2) (local.get $path) (local.get $len)))
            (drop (call $write (i32.const 2) (i32.const 960) (i32.const 8)))
            (call $print_u64 (i32.const 2) (i64.extend_i32_u (local.get $err)))
            (i32.store8 (i32.const 32) (i32.const 10))
            (drop (call $write (i32.const 2) (i32.const 32) (i32.const 1)))
            (call $proc_exit (i32.const 1)))
        """#

    static let hello = #"""
        (module
        \#(importWrite)
          (memory (export "memory") 1)
          (data (i32.const 64) "Hello, world!\n")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const 14))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
        """#

    static let echo = #"""
        (module
        \#(importWrite)
        \#(importRead)
        \#(importExit)
          (memory (export "memory") 1)
        \#(helpersWrite)
          (func (export "_start")
            (local $n i32)
            (loop $more
              (i32.store (i32.const 0) (i32.const 32768))
              (i32.store (i32.const 4) (i32.const 32768))
              (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 12))
                (then (call $proc_exit (i32.const 1))))
              (local.set $n (i32.load (i32.const 12)))
              (if (local.get $n)
                (then
                  (if (call $write (i32.const 1) (i32.const 32768) (local.get $n))
                    (then (call $proc_exit (i32.const 1))))
                  (br $more))))))
        """#

    static let wordcount = #"""
        (module
        \#(importWrite)
        \#(importRead)
        \#(importArgs)
        \#(importOpen)
        \#(importExit)
          (memory (export "memory") 1)
          (data (i32.const 64) "usage: wordcount PATH\n")
          (data (i32.const 96) "wordcount: cannot open ")
          (data (i32.const 128) "wordcount: cannot read ")
        \#(helpersWrite)
        \#(helpersArgs)
        \#(helperSpace)
        \#(helperOpenError)
          (func (export "_start")
            (local $path i32) (local $len i32) (local $shown i32) (local $shownLen i32)
            (local $err i32) (local $fd i32) (local $n i32) (local $i i32) (local $c i32)
            (local $inWord i32) (local $words i64)
            (if (i32.ne (call $load_args) (i32.const 2))
              (then
                (drop (call $write (i32.const 2) (i32.const 64) (i32.const 22)))
                (call $proc_exit (i32.const 2))))
            (local.set $shown (call $arg (i32.const 1)))
            (local.set $shownLen (call $strlen (local.get $shown)))
            (local.set $path (local.get $shown))
            (local.set $len (local.get $shownLen))
            ;; "/input.txt" names input.txt in the data folder, as wasi-libc would resolve it.
            (block $stripped
              (loop $strip
                (br_if $stripped (i32.eqz (local.get $len)))
                (br_if $stripped (i32.ne (i32.load8_u (local.get $path)) (i32.const 47)))
                (local.set $path (i32.add (local.get $path) (i32.const 1)))
                (local.set $len (i32.sub (local.get $len) (i32.const 1)))
                (br $strip)))
            (local.set $err
              (call $path_open (i32.const 3) (i32.const 0) (local.get $path) (local.get $len)
                (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 24)))
            (if (local.get $err)
              (then (call $open_error (i32.const 96) (i32.const 23) (local.get $shown) (local.get $shownLen)
                (local.get $err))))
            (local.set $fd (i32.load (i32.const 24)))
            (block $eof
              (loop $more
                (i32.store (i32.const 0) (i32.const 32768))
                (i32.store (i32.const 4) (i32.const 32768))
                (local.set $err (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 12)))
                (if (local.get $err)
                  (then (call $open_error (i32.const 128) (i32.const 23) (local.get $shown) (local.get $shownLen)
                    (local.get $err))))
                (local.set $n (i32.load (i32.const 12)))
                (br_if $eof (i32.eqz (local.get $n)))
                (local.set $i (i32.const 0))
                (loop $byte
                  (local.set $c (i32.load8_u (i32.add (i32.const 32768) (local.get $i))))
                  (if (call $is_space (local.get $c))
                    (then (local.set $inWord (i32.const 0)))
                    (else
                      (if (i32.eqz (local.get $inWord))
                        (then
                          (local.set $words (i64.add (local.get $words) (i64.const 1)))
                          (local.set $inWord (i32.const 1))))))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br_if $byte (i32.lt_u (local.get $i) (local.get $n))))
                (br $more)))
            (drop (call $fd_close (local.get $fd)))
            (call $print_u64 (i32.const 1) (local.get $words))
            (i32.store8 (i32.const 32) (i32.const 32))
            (drop (call $write (i32.const 1) (i32.const 32) (i32.const 1)))
            (drop (call $write (i32.const 1) (local.get $shown) (local.get $shownLen)))
            (i32.store8 (i32.const 32) (i32.const 10))
            (drop (call $write (i32.const 1) (i32.const 32) (i32.const 1)))))
        """#

    static let sum = #"""
        (module
        \#(importWrite)
        \#(importRead)
        \#(importArgs)
        \#(importExit)
          (memory (export "memory") 1)
          (data (i32.const 64) "sum: not an integer\n")
          (data (i32.const 96) "sum: too many arguments\n")
          (global $acc (mut i64) (i64.const 0))
          (global $num (mut i64) (i64.const 0))
          (global $neg (mut i32) (i32.const 0))
          (global $digits (mut i32) (i32.const 0))
          (global $inToken (mut i32) (i32.const 0))
        \#(helpersWrite)
        \#(helpersArgs)
        \#(helperSpace)
          ;; Ends the current token: adds it to $acc. 1 for a lone "-".
          (func $end_token (result i32)
            (if (i32.eqz (global.get $inToken)) (then (return (i32.const 0))))
            (if (i32.eqz (global.get $digits)) (then (return (i32.const 1))))
            (global.set $acc
              (i64.add (global.get $acc)
                (if (result i64) (global.get $neg)
                  (then (i64.sub (i64.const 0) (global.get $num)))
                  (else (global.get $num)))))
            (global.set $num (i64.const 0))
            (global.set $neg (i32.const 0))
            (global.set $digits (i32.const 0))
            (global.set $inToken (i32.const 0))
            (i32.const 0))
          ;; Feeds one byte; 1 when it cannot be part of an integer.
          (func $feed (param $c i32) (result i32)
            (if (call $is_space (local.get $c)) (then (return (call $end_token))))
            (if (i32.and (i32.eq (local.get $c) (i32.const 45)) (i32.eqz (global.get $inToken)))
              (then
                (global.set $neg (i32.const 1))
                (global.set $inToken (i32.const 1))
                (return (i32.const 0))))
            (if (i32.and (i32.ge_u (local.get $c) (i32.const 48)) (i32.le_u (local.get $c) (i32.const 57)))
              (then
                (global.set $num
                  (i64.add (i64.mul (global.get $num) (i64.const 10))
                    (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 48)))))
                (global.set $digits (i32.add (global.get $digits) (i32.const 1)))
                (global.set $inToken (i32.const 1))
                (return (i32.const 0))))
            (i32.const 1))
          (func $bad
            (drop (call $write (i32.const 2) (i32.const 64) (i32.const 20)))
            (call $proc_exit (i32.const 1)))
          (func (export "_start")
            (local $argc i32) (local $i i32) (local $p i32) (local $n i32) (local $j i32)
            (local.set $argc (call $load_args))
            (if (i32.lt_s (local.get $argc) (i32.const 0))
              (then
                (drop (call $write (i32.const 2) (i32.const 96) (i32.const 24)))
                (call $proc_exit (i32.const 2))))
            (if (i32.gt_u (local.get $argc) (i32.const 1))
              (then
                (local.set $i (i32.const 1))
                (loop $args
                  (local.set $p (call $arg (local.get $i)))
                  (block $end
                    (loop $chars
                      (br_if $end (i32.eqz (i32.load8_u (local.get $p))))
                      (if (call $feed (i32.load8_u (local.get $p))) (then (call $bad)))
                      (local.set $p (i32.add (local.get $p) (i32.const 1)))
                      (br $chars)))
                  (if (call $end_token) (then (call $bad)))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br_if $args (i32.lt_u (local.get $i) (local.get $argc)))))
              (else
                (block $eof
                  (loop $more
                    (i32.store (i32.const 0) (i32.const 32768))
                    (i32.store (i32.const 4) (i32.const 32768))
                    (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 12))
                      (then (call $proc_exit (i32.const 1))))
                    (local.set $n (i32.load (i32.const 12)))
                    (br_if $eof (i32.eqz (local.get $n)))
                    (local.set $j (i32.const 0))
                    (loop $byte
                      (if (call $feed (i32.load8_u (i32.add (i32.const 32768) (local.get $j)))) (then (call $bad)))
                      (local.set $j (i32.add (local.get $j) (i32.const 1)))
                      (br_if $byte (i32.lt_u (local.get $j) (local.get $n))))
                    (br $more)))
                (if (call $end_token) (then (call $bad)))))
            (call $print_i64 (i32.const 1) (global.get $acc))
            (i32.store8 (i32.const 32) (i32.const 10))
            (drop (call $write (i32.const 1) (i32.const 32) (i32.const 1)))))
        """#

    static let cat = #"""
        (module
        \#(importWrite)
        \#(importRead)
        \#(importArgs)
        \#(importOpen)
        \#(importExit)
          (memory (export "memory") 1)
          (data (i32.const 64) "usage: cat PATH\n")
          (data (i32.const 96) "cat: cannot open ")
          (data (i32.const 128) "cat: cannot read ")
        \#(helpersWrite)
        \#(helpersArgs)
        \#(helperOpenError)
          (func (export "_start")
            (local $path i32) (local $len i32) (local $err i32) (local $fd i32) (local $n i32)
            (if (i32.ne (call $load_args) (i32.const 2))
              (then
                (drop (call $write (i32.const 2) (i32.const 64) (i32.const 16)))
                (call $proc_exit (i32.const 2))))
            (local.set $path (call $arg (i32.const 1)))
            (local.set $len (call $strlen (local.get $path)))
            (local.set $err
              (call $path_open (i32.const 3) (i32.const 0) (local.get $path) (local.get $len)
                (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 24)))
            (if (local.get $err)
              (then (call $open_error (i32.const 96) (i32.const 17) (local.get $path) (local.get $len) (local.get $err))))
            (local.set $fd (i32.load (i32.const 24)))
            (block $eof
              (loop $more
                (i32.store (i32.const 0) (i32.const 32768))
                (i32.store (i32.const 4) (i32.const 32768))
                (local.set $err (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 12)))
                (if (local.get $err)
                  (then (call $open_error (i32.const 128) (i32.const 17) (local.get $path) (local.get $len)
                    (local.get $err))))
                (local.set $n (i32.load (i32.const 12)))
                (br_if $eof (i32.eqz (local.get $n)))
                (if (call $write (i32.const 1) (i32.const 32768) (local.get $n)) (then (call $proc_exit (i32.const 1))))
                (br $more)))
            (drop (call $fd_close (local.get $fd)))))
        """#

    static let trap = #"""
        (module
          (memory (export "memory") 1)
          (func (export "_start")
            (unreachable)))
        """#

    static let spin = #"""
        (module
          (memory (export "memory") 1)
          (func (export "_start")
            (loop $forever
              (br $forever))))
        """#

    /// `ticker N [WORK]`: N ticks, each WORK steps of an LCG (default 100 000) then one `.` on
    /// stdout (a WASI call, where a preempted run stops); then `\nticker: N ticks, checksum C\n`.
    static let ticker = #"""
        (module
        \#(importWrite)
        \#(importArgs)
        \#(importExit)
          (memory (export "memory") 1)
          (data (i32.const 64) "usage: ticker N [WORK]\n")
          (data (i32.const 96) "\nticker: ")
          (data (i32.const 112) " ticks, checksum ")
          (data (i32.const 136) ".")
        \#(helpersWrite)
        \#(helpersArgs)
          ;; $parse (ptr) -> a decimal number, or -1 when empty or not all digits.
          (func $parse (param $p i32) (result i64)
            (local $n i64) (local $c i32) (local $digits i32)
            (block $end
              (loop $more
                (local.set $c (i32.load8_u (local.get $p)))
                (br_if $end (i32.eqz (local.get $c)))
                (if (i32.or (i32.lt_u (local.get $c) (i32.const 48)) (i32.gt_u (local.get $c) (i32.const 57)))
                  (then (return (i64.const -1))))
                (if (i32.ge_u (local.get $digits) (i32.const 18)) (then (return (i64.const -1))))
                (local.set $n
                  (i64.add (i64.mul (local.get $n) (i64.const 10))
                    (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 48)))))
                (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
                (local.set $p (i32.add (local.get $p) (i32.const 1)))
                (br $more)))
            (if (result i64) (local.get $digits) (then (local.get $n)) (else (i64.const -1))))
          (func $usage
            (drop (call $write (i32.const 2) (i32.const 64) (i32.const 23)))
            (call $proc_exit (i32.const 2)))
          (func (export "_start")
            (local $argc i32) (local $n i64) (local $work i64) (local $i i64) (local $j i64) (local $acc i64)
            (local.set $argc (call $load_args))
            (if (i32.or (i32.lt_s (local.get $argc) (i32.const 2)) (i32.gt_s (local.get $argc) (i32.const 3)))
              (then (call $usage)))
            (local.set $n (call $parse (call $arg (i32.const 1))))
            (local.set $work (i64.const 100000))
            (if (i32.eq (local.get $argc) (i32.const 3))
              (then (local.set $work (call $parse (call $arg (i32.const 2))))))
            (if (i32.or (i64.lt_s (local.get $n) (i64.const 0)) (i64.lt_s (local.get $work) (i64.const 0)))
              (then (call $usage)))
            (local.set $acc (i64.const 1))
            (block $done
              (loop $tick
                (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
                (local.set $j (i64.const 0))
                (block $computed
                  (loop $step
                    (br_if $computed (i64.ge_u (local.get $j) (local.get $work)))
                    (local.set $acc
                      (i64.add (i64.mul (local.get $acc) (i64.const 6364136223846793005))
                        (i64.const 1442695040888963407)))
                    (local.set $j (i64.add (local.get $j) (i64.const 1)))
                    (br $step)))
                (if (call $write (i32.const 1) (i32.const 136) (i32.const 1)) (then (call $proc_exit (i32.const 1))))
                (local.set $i (i64.add (local.get $i) (i64.const 1)))
                (br $tick)))
            (drop (call $write (i32.const 1) (i32.const 96) (i32.const 9)))
            (call $print_u64 (i32.const 1) (local.get $n))
            (drop (call $write (i32.const 1) (i32.const 112) (i32.const 17)))
            (call $print_u64 (i32.const 1) (local.get $acc))
            (i32.store8 (i32.const 32) (i32.const 10))
            (drop (call $write (i32.const 1) (i32.const 32) (i32.const 1)))))
        """#
}
