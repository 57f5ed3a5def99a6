//! The built-in corpus: simple stories, dialogues, questions and answers, and facts, written by
//! a deterministic generator so that minillm can train a model with no download.
//!
//! The generator composes each document from many phrasings of the same small world (children
//! and animals, countries and capitals, colours, numbers, days and seasons). Facts never
//! contradict each other, so a small model can learn them; phrasings vary, so it must learn
//! grammar rather than copy. `builtin()` is about 1.3 MB of text, the same on every machine.

pub mod tasks;
pub(crate) mod words;

use crate::rng::Rng;
use std::sync::OnceLock;
use words::*;

/// The seed of the built-in corpus.
pub const SEED: u64 = 2026;
/// The built-in corpus is at least this many bytes.
pub const MIN_BYTES: usize = 1_300_000;

/// The built-in corpus (generated on first use, then shared).
pub fn builtin() -> &'static str {
    static CORPUS: OnceLock<String> = OnceLock::new();
    CORPUS.get_or_init(|| generate(SEED, MIN_BYTES))
}

/// Documents separated by a blank line until the text holds at least `min_bytes`.
pub fn generate(seed: u64, min_bytes: usize) -> String {
    let mut g = Gen { rng: Rng::new(seed), out: String::with_capacity(min_bytes + 4096) };
    while g.out.len() < min_bytes {
        match g.rng.below(10) {
            0..=3 => g.story(),
            4..=5 => g.dialogue(),
            6..=7 => g.questions(),
            _ => g.facts(),
        }
        g.out.push_str("\n\n");
    }
    g.out
}

struct Person {
    name: &'static str,
    he: &'static str,
    his: &'static str,
    him: &'static str,
}

/// The word with its indefinite article: "a cat", "an owl".
fn with_article(word: &str) -> String {
    let article = if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {word}")
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

struct Gen {
    rng: Rng,
    out: String,
}

impl Gen {
    fn person(&mut self) -> Person {
        let &(name, she) = self.rng.pick(NAMES);
        if she {
            Person { name, he: "she", his: "her", him: "her" }
        } else {
            Person { name, he: "he", his: "his", him: "him" }
        }
    }

    fn two_people(&mut self) -> (Person, Person) {
        let a = self.person();
        loop {
            let b = self.person();
            if b.name != a.name {
                return (a, b);
            }
        }
    }

    fn say(&mut self, sentence: impl AsRef<str>) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push(' ');
        }
        self.out.push_str(sentence.as_ref());
    }

    fn story(&mut self) {
        let (hero, friend) = self.two_people();
        let animal = self.rng.pick(ANIMALS);
        let adjective = *self.rng.pick(KIND_ADJECTIVES);
        let &(thing, found_at, trouble, fix, good_state) = self.rng.pick(TROUBLES);
        let (lesson, habit) = *self.rng.pick(MORALS);
        let (good, bad) = (*self.rng.pick(GOOD_FEELINGS), *self.rng.pick(BAD_FEELINGS));
        let place = *self.rng.pick(OUTDOOR);
        let activity = *self.rng.pick(ACTIVITIES);
        let (h, n, hs) = (hero.he, hero.name, hero.his);
        let (hc, hsc) = (capitalize(h), capitalize(hs));
        let opening = match self.rng.below(4) {
            0 => format!("Once upon a time, there was a {adjective} {} named {n}.", animal.name),
            1 => format!(
                "Once upon a time, in {}, there lived a {adjective} child named {n}.",
                self.rng.pick(PLACES)
            ),
            2 => format!(
                "{n} was a {adjective} {}. Like all {}, {h} lived {}.",
                animal.name, animal.plural, animal.home
            ),
            _ => {
                let child = if h == "she" { "girl" } else { "boy" };
                format!("There was once a {adjective} {child} named {n}.")
            }
        };
        self.say(opening);
        match self.rng.below(3) {
            0 => self.say(format!("{hc} loved to {activity}.")),
            1 => self.say(format!("Every day, {h} liked to {activity} with {hs} friends.")),
            _ => self.say(format!("{hsc} favorite thing was to {activity} at {place}.")),
        }
        let time = *self.rng.pick(TIMES);
        self.say(format!("{time}, {n} found a {thing} {found_at}."));
        match self.rng.below(3) {
            0 => self.say(format!("But the {thing} was {trouble}.")),
            1 => self.say(format!("Oh no! The {thing} was {trouble}.")),
            _ => self.say(format!("Sadly, the {thing} was {trouble}, and {n} did not know what to do.")),
        }
        self.say(format!("{n} felt {bad}."));
        let f = friend.name;
        match self.rng.below(3) {
            0 => self.say(format!("Then {n}'s friend {f} came by and asked, \"Why are you {bad}?\"")),
            1 => {
                self.say(format!("Just then, {f} walked over. \"What is wrong, {n}?\" {} asked.", friend.he))
            }
            _ => self.say(format!("{f} saw {n} and said, \"Hello, {n}. You look {bad}.\"")),
        }
        self.say(format!("\"My {thing} is {trouble},\" said {n}."));
        match self.rng.below(3) {
            0 => self.say(format!("\"Don't worry,\" said {f}. \"I can help you.\"")),
            1 => self.say(format!("\"Let's fix it together,\" said {f} with a smile.")),
            _ => self.say(format!("{f} thought for a moment. \"I have an idea,\" {} said.", friend.he)),
        }
        self.say(format!("So {n} and {f} {fix}."));
        self.say(format!("Soon the {thing} was {good_state} again."));
        match self.rng.below(3) {
            0 => self.say(format!("{n} was so {good}. \"Thank you, {f}!\" {h} said.")),
            1 => self.say(format!("{n} hugged {f}. {hc} felt {good} and {} felt {good} too.", friend.he)),
            _ => {
                self.say(format!("\"You are a good friend,\" {n} told {}. {hc} was very {good}.", friend.him))
            }
        }
        match self.rng.below(3) {
            0 => self.say(format!("That day, {n} learned that {lesson}.")),
            1 => self.say(format!("From that day on, {n} always {habit}.")),
            _ => self.say(format!("{n} learned that {lesson}, and from then on {h} always {habit}.")),
        }
        if self.rng.chance(0.3) {
            self.say("The end.");
        }
    }

    fn dialogue(&mut self) {
        let (a, b) = self.two_people();
        let (an, bn) = (a.name, b.name);
        self.out.push_str(&format!("{an}: Hello, {bn}! How are you today?\n"));
        let feeling =
            if self.rng.chance(0.7) { *self.rng.pick(GOOD_FEELINGS) } else { *self.rng.pick(BAD_FEELINGS) };
        self.out.push_str(&format!("{bn}: Hi, {an}. I am {feeling}. And you?\n"));
        self.out.push_str(&format!("{an}: I am fine, thank you.\n"));
        for _ in 0..1 + self.rng.below(3) {
            match self.rng.below(5) {
                0 => {
                    let (weather, advice) = *self.rng.pick(WEATHER);
                    self.out.push_str(&format!("{bn}: What is the weather like?\n"));
                    self.out.push_str(&format!("{an}: It is {weather} today, so we should {advice}.\n"));
                }
                1 => {
                    let food = *self.rng.pick(FOODS);
                    self.out.push_str(&format!("{an}: What do you want to eat?\n"));
                    self.out.push_str(&format!("{bn}: I would like some {food}, please.\n"));
                    self.out.push_str(&format!("{an}: Here you are. Enjoy your {food}!\n"));
                }
                2 => {
                    let &(country, capital, _, _) = self.rng.pick(COUNTRIES);
                    self.out.push_str(&format!("{bn}: Do you know the capital of {country}?\n"));
                    self.out.push_str(&format!("{an}: Yes. The capital of {country} is {capital}.\n"));
                }
                3 => {
                    let animal = self.rng.pick(ANIMALS);
                    self.out
                        .push_str(&format!("{an}: Look, {}! What does it say?\n", with_article(animal.name)));
                    let says = if animal.sound == "nothing at all" {
                        "It says nothing at all.".to_string()
                    } else {
                        format!("It says {}.", animal.sound)
                    };
                    self.out.push_str(&format!(
                        "{bn}: {says} {} likes to eat {}.\n",
                        capitalize(&with_article(animal.name)),
                        animal.food
                    ));
                }
                _ => {
                    let (x, y) = (self.rng.below(10), self.rng.below(10));
                    self.out.push_str(&format!(
                        "{bn}: Can you help me count? What is {} plus {}?\n",
                        NUMBER_WORDS[x], NUMBER_WORDS[y]
                    ));
                    self.out.push_str(&format!(
                        "{an}: {} plus {} is {}.\n",
                        capitalize(NUMBER_WORDS[x]),
                        NUMBER_WORDS[y],
                        NUMBER_WORDS[x + y]
                    ));
                }
            }
        }
        let place = *self.rng.pick(OUTDOOR);
        self.out.push_str(&format!("{bn}: Do you want to go to {place} with me?\n"));
        self.out.push_str(&format!("{an}: Yes, let's go!"));
    }

    fn questions(&mut self) {
        for _ in 0..2 + self.rng.below(4) {
            let (q, a) = match self.rng.below(7) {
                0 => {
                    let &(country, capital, _, _) = self.rng.pick(COUNTRIES);
                    (
                        format!("What is the capital of {country}?"),
                        format!("The capital of {country} is {capital}."),
                    )
                }
                1 => {
                    let animal = self.rng.pick(ANIMALS);
                    (
                        format!("What sound does {} make?", with_article(animal.name)),
                        if animal.sound == "nothing at all" {
                            format!(
                                "{} makes almost no sound at all.",
                                capitalize(&with_article(animal.name))
                            )
                        } else {
                            format!("{} says {}.", capitalize(&with_article(animal.name)), animal.sound)
                        },
                    )
                }
                2 => {
                    let &(thing, color) = self.rng.pick(COLORED_THINGS);
                    (format!("What color is {thing}?"), format!("{} is {color}.", capitalize(thing)))
                }
                3 => {
                    let (x, y) = (self.rng.below(11), self.rng.below(10));
                    (
                        format!("What is {} plus {}?", NUMBER_WORDS[x], NUMBER_WORDS[y]),
                        format!(
                            "{} plus {} is {}.",
                            capitalize(NUMBER_WORDS[x]),
                            NUMBER_WORDS[y],
                            NUMBER_WORDS[x + y]
                        ),
                    )
                }
                4 => {
                    let d = self.rng.below(7);
                    (
                        format!("What day comes after {}?", DAYS[d]),
                        format!("After {} comes {}.", DAYS[d], DAYS[(d + 1) % 7]),
                    )
                }
                5 => {
                    let &(word, opposite) = self.rng.pick(OPPOSITES);
                    (
                        format!("What is the opposite of {word}?"),
                        format!("The opposite of {word} is {opposite}."),
                    )
                }
                _ => {
                    let animal = self.rng.pick(ANIMALS);
                    (
                        format!("Where do {} live?", animal.plural),
                        format!("{} live {}.", capitalize(animal.plural), animal.home),
                    )
                }
            };
            self.out.push_str(&format!("Question: {q}\nAnswer: {a}\n"));
        }
        self.out.pop();
    }

    fn facts(&mut self) {
        match self.rng.below(5) {
            0 => {
                let &(country, capital, continent, language) = self.rng.pick(COUNTRIES);
                self.say(format!("{country} is a country in {continent}."));
                self.say(format!("The capital of {country} is {capital}."));
                self.say(format!("People in {country} speak {language}."));
                if self.rng.chance(0.5) {
                    self.say(format!(
                        "{capital} is the biggest and busiest place many visitors see in {country}."
                    ));
                }
            }
            1 => {
                let animal = self.rng.pick(ANIMALS);
                let (a, p) = (animal.name, animal.plural);
                self.say(format!("The {a} is an animal."));
                self.say(format!("{} live {}.", capitalize(p), animal.home));
                self.say(format!("{} likes to eat {}.", capitalize(&with_article(animal.name)), animal.food));
                if animal.sound != "nothing at all" {
                    self.say(format!("{} says {}.", capitalize(&with_article(animal.name)), animal.sound));
                }
                self.say(format!("Many people think {p} are {}.", animal.trait_));
            }
            2 => {
                let start = self.rng.below(12);
                let n = 3 + self.rng.below(4);
                for i in 0..n {
                    let m = (start + i) % 12;
                    self.say(format!("After {} comes {}.", MONTHS[m], MONTHS[(m + 1) % 12]));
                }
                let &(season, what) = self.rng.pick(SEASONS);
                self.say(format!("In {season}, {what}."));
            }
            3 => {
                for _ in 0..3 + self.rng.below(3) {
                    let (x, y) = (1 + self.rng.below(10), self.rng.below(11));
                    let (xs, ys) = (capitalize(NUMBER_WORDS[x]), NUMBER_WORDS[y]);
                    match self.rng.below(3) {
                        0 if y <= x => self.say(format!("{xs} minus {ys} is {}.", NUMBER_WORDS[x - y])),
                        _ => self.say(format!("{xs} plus {ys} is {}.", NUMBER_WORDS[x + y])),
                    }
                }
            }
            _ => {
                for _ in 0..3 + self.rng.below(3) {
                    let &(thing, color) = self.rng.pick(COLORED_THINGS);
                    self.say(format!("{} is {color}.", capitalize(thing)));
                }
                let &(word, opposite) = self.rng.pick(OPPOSITES);
                self.say(format!("The opposite of {word} is {opposite}."));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_large_enough() {
        assert_eq!(generate(5, 20_000), generate(5, 20_000));
        assert_ne!(generate(5, 20_000), generate(6, 20_000));
        let text = builtin();
        assert!(text.len() >= MIN_BYTES);
        assert!(text.contains("The capital of France is Paris."));
    }

    #[test]
    fn varied_enough_to_learn_from() {
        let text = builtin();
        let docs: std::collections::HashSet<&str> = text.split("\n\n").collect();
        let total = text.split("\n\n").count();
        assert!(docs.len() * 100 >= total * 90, "{} distinct of {total}", docs.len());
        let sentences: std::collections::HashSet<&str> = text.split(['.', '\n']).collect();
        assert!(sentences.len() > 5_000, "{} distinct sentences", sentences.len());
    }
}
