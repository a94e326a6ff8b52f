//! Salesforce record ids: 15-char case-sensitive ids and their 18-char checksummed form (spec §1.6).

const SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Appends the 3-char checksum to a 15-char id.
pub fn to18(id15: &str) -> String {
    let bytes = id15.as_bytes();
    let mut out = String::with_capacity(18);
    out.push_str(id15);
    for chunk in bytes.chunks(5).take(3) {
        let mut bits = 0usize;
        for (j, c) in chunk.iter().enumerate() {
            if c.is_ascii_uppercase() {
                bits |= 1 << j;
            }
        }
        out.push(SUFFIX[bits] as char);
    }
    out
}

/// Normalises a 15- or 18-char id into its 15-char form; `None` when it is not id-shaped.
///
/// An 18-char id may arrive in any case: the checksum restores the case of the first 15 chars.
pub fn to15(id: &str) -> Option<String> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        15 => Some(id.to_string()),
        18 => {
            let (base, sum) = id.split_at(15);
            let sum = sum.to_ascii_uppercase();
            let mut out: Vec<u8> = base.as_bytes().to_vec();
            for (g, c) in sum.bytes().enumerate() {
                let bits = SUFFIX.iter().position(|s| *s == c)?;
                for j in 0..5 {
                    let b = &mut out[g * 5 + j];
                    if bits & (1 << j) != 0 {
                        if !b.is_ascii_alphabetic() {
                            return None;
                        }
                        *b = b.to_ascii_uppercase();
                    } else {
                        *b = b.to_ascii_lowercase();
                    }
                }
            }
            String::from_utf8(out).ok()
        }
        _ => None,
    }
}

/// Builds the 15-char id for sequence number `seq` of an object with `prefix`.
///
/// Layout: 3-char key prefix, `"0" + pod char` like real instance ids, then 10 base-62 chars.
pub fn make15(prefix: &str, pod: char, seq: u64) -> String {
    let mut tail = [b'0'; 10];
    let mut n = seq;
    for slot in tail.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let mut s = String::with_capacity(15);
    s.push_str(prefix);
    s.push('5');
    s.push(pod);
    s.push_str(std::str::from_utf8(&tail).unwrap_or("0000000000"));
    s
}

/// Key prefix (first 3 chars) of an id.
pub fn prefix(id: &str) -> &str {
    id.get(..3).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_real_ids() {
        assert_eq!(to18("0015500001QdQWa"), "0015500001QdQWaAAN");
        assert!(to18("00Q9H00000C6pyc").ends_with("UAB"));
    }

    #[test]
    fn to15_restores_case() {
        let id = "0015500001QdQWaAAN";
        assert_eq!(to15(id).as_deref(), Some("0015500001QdQWa"));
        assert_eq!(
            to15(&id.to_ascii_lowercase()).as_deref(),
            Some("0015500001QdQWa")
        );
        assert_eq!(to15("0015500001QdQWa").as_deref(), Some("0015500001QdQWa"));
        assert_eq!(to15("bad id"), None);
        assert_eq!(to15("Name"), None);
    }

    #[test]
    fn make15_is_ordered_and_sized() {
        let a = make15("001", 'A', 1);
        let b = make15("001", 'A', 62);
        assert_eq!(a.len(), 15);
        assert!(a < b);
        assert_eq!(to15(&to18(&a)).as_deref(), Some(a.as_str()));
    }
}
