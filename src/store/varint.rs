//! LEB128 varints and length-prefixed strings: the binary records of the
//! index and of the run's temporary files.

pub(crate) fn put(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

/// Zigzag, so that small negative numbers stay short.
pub(crate) fn put_i64(b: &mut Vec<u8>, v: i64) {
    put(b, ((v << 1) ^ (v >> 63)) as u64);
}

/// `None` is length 0; `Some` is its length + 1, then the bytes.
pub(crate) fn put_str(b: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => put(b, 0),
        Some(s) => {
            put(b, s.len() as u64 + 1);
            b.extend_from_slice(s.as_bytes());
        }
    }
}

pub(crate) struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.b.len()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            v |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    pub(crate) fn i64(&mut self) -> Option<i64> {
        let v = self.u64()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    pub(crate) fn str(&mut self) -> Option<Option<String>> {
        match self.u64()? {
            0 => Some(None),
            n => {
                let len = usize::try_from(n - 1).ok()?;
                Some(Some(String::from_utf8(self.bytes(len)?.to_vec()).ok()?))
            }
        }
    }

    pub(crate) fn end(&self) -> Option<()> {
        self.b.is_empty().then_some(())
    }
}
