//! Stop strings: end generation when the text contains one, without printing it, even when it
//! arrives split across several tokens.

/// Feed it text as it is generated; it releases what is safe to show and says when to stop.
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
    /// The stop string that was reached.
    hit: Option<usize>,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> StopMatcher {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            pending: String::new(),
            hit: None,
        }
    }

    /// Adds `text`; returns the text now safe to show, and whether a stop string was reached
    /// (the stop string and anything after it are never returned).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        // The earliest in the text; of two starting together, the shorter.
        let first_stop = (self.stops.iter().enumerate())
            .filter_map(|(i, s)| self.pending.find(s.as_str()).map(|at| (at, s.len(), i)))
            .min();
        if let Some((at, _, i)) = first_stop {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            self.hit = Some(i);
            return (out, true);
        }
        // Hold back the longest tail that could still grow into a stop string.
        let hold = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).rev().filter(|&n| s.is_char_boundary(n)).map(move |n| &s[..n]))
            .filter(|prefix| self.pending.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - hold;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    /// The stop string that was reached, if one was.
    pub fn hit(&self) -> Option<&str> {
        self.hit.map(|i| self.stops[i].as_str())
    }

    /// Whatever was held back, once generation ends for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_string_split_across_tokens_is_caught_and_not_shown() {
        let mut m = StopMatcher::new(vec!["\nUser:".into()]);
        assert_eq!(m.push("Hello"), ("Hello".into(), false));
        assert_eq!(m.push(" there\nUs"), (" there".into(), false)); // "\nUs" might be the stop
        assert_eq!(m.push("er: more"), (String::new(), true));
    }

    #[test]
    fn held_back_text_is_released_when_it_turns_out_harmless() {
        let mut m = StopMatcher::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(m.push("the EN"), ("the ".into(), false));
        assert_eq!(m.push("D"), (String::new(), true));
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("an EN"), ("an ".into(), false));
        assert_eq!(m.push("ding"), ("ENding".into(), false));
        assert_eq!(m.push(" E"), (" ".into(), false));
        assert_eq!(m.finish(), "E");
    }
}
