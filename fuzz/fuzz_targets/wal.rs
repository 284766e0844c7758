#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ltx_fuzz::wal::run(data));
