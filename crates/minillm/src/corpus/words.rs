//! The word lists the corpus generator draws from. Facts are kept consistent (a cow always says
//! moo, Paris is always the capital of France) so a model trained on the corpus can learn them.

/// (name, is_she)
pub const NAMES: &[(&str, bool)] = &[
    ("Tom", false),
    ("Mia", true),
    ("Ben", false),
    ("Lily", true),
    ("Sam", false),
    ("Anna", true),
    ("Leo", false),
    ("Emma", true),
    ("Max", false),
    ("Zoe", true),
    ("Jack", false),
    ("Lucy", true),
    ("Noah", false),
    ("Ella", true),
    ("Finn", false),
    ("Rosa", true),
    ("Omar", false),
    ("Nina", true),
    ("Hugo", false),
    ("Ivy", true),
    ("Kai", false),
    ("Maya", true),
    ("Theo", false),
    ("Sara", true),
    ("Eli", false),
    ("Lena", true),
    ("Adam", false),
    ("Ruby", true),
    ("Jonas", false),
    ("Alice", true),
];

pub struct Animal {
    pub name: &'static str,
    pub plural: &'static str,
    pub sound: &'static str,
    pub home: &'static str,
    pub food: &'static str,
    pub trait_: &'static str,
}

macro_rules! animals {
    ($(($n:literal, $p:literal, $s:literal, $h:literal, $f:literal, $t:literal)),* $(,)?) => {
        &[$(Animal { name: $n, plural: $p, sound: $s, home: $h, food: $f, trait_: $t }),*]
    };
}

pub const ANIMALS: &[Animal] = animals![
    ("cat", "cats", "meow", "in houses", "fish", "soft"),
    ("dog", "dogs", "woof", "in houses", "bones", "loyal"),
    ("cow", "cows", "moo", "on farms", "grass", "big"),
    ("duck", "ducks", "quack", "near ponds", "seeds", "noisy"),
    ("sheep", "sheep", "baa", "on farms", "grass", "woolly"),
    ("horse", "horses", "neigh", "on farms", "hay", "fast"),
    ("pig", "pigs", "oink", "on farms", "apples", "pink"),
    ("frog", "frogs", "ribbit", "near ponds", "flies", "green"),
    ("owl", "owls", "hoot", "in trees", "mice", "wise"),
    ("lion", "lions", "roar", "in Africa", "meat", "brave"),
    ("bee", "bees", "buzz", "in hives", "nectar", "busy"),
    ("mouse", "mice", "squeak", "in fields", "cheese", "small"),
    ("bird", "birds", "tweet", "in trees", "worms", "light"),
    ("rabbit", "rabbits", "nothing at all", "in burrows", "carrots", "quick"),
    ("fox", "foxes", "yip", "in forests", "berries", "clever"),
    ("bear", "bears", "growl", "in forests", "honey", "strong"),
    ("hen", "hens", "cluck", "on farms", "corn", "busy"),
    ("goat", "goats", "bleat", "on hills", "leaves", "curious"),
    ("turtle", "turtles", "nothing at all", "near rivers", "plants", "slow"),
    ("squirrel", "squirrels", "chatter", "in trees", "nuts", "quick"),
];

/// (country, capital, continent, language)
pub const COUNTRIES: &[(&str, &str, &str, &str)] = &[
    ("France", "Paris", "Europe", "French"),
    ("Germany", "Berlin", "Europe", "German"),
    ("Italy", "Rome", "Europe", "Italian"),
    ("Spain", "Madrid", "Europe", "Spanish"),
    ("Portugal", "Lisbon", "Europe", "Portuguese"),
    ("England", "London", "Europe", "English"),
    ("Ireland", "Dublin", "Europe", "English and Irish"),
    ("Greece", "Athens", "Europe", "Greek"),
    ("Poland", "Warsaw", "Europe", "Polish"),
    ("Sweden", "Stockholm", "Europe", "Swedish"),
    ("Norway", "Oslo", "Europe", "Norwegian"),
    ("Finland", "Helsinki", "Europe", "Finnish"),
    ("Austria", "Vienna", "Europe", "German"),
    ("Egypt", "Cairo", "Africa", "Arabic"),
    ("Kenya", "Nairobi", "Africa", "Swahili and English"),
    ("Nigeria", "Abuja", "Africa", "English"),
    ("Morocco", "Rabat", "Africa", "Arabic"),
    ("Japan", "Tokyo", "Asia", "Japanese"),
    ("China", "Beijing", "Asia", "Chinese"),
    ("India", "New Delhi", "Asia", "Hindi and English"),
    ("Thailand", "Bangkok", "Asia", "Thai"),
    ("Korea", "Seoul", "Asia", "Korean"),
    ("Vietnam", "Hanoi", "Asia", "Vietnamese"),
    ("Turkey", "Ankara", "Asia", "Turkish"),
    ("Canada", "Ottawa", "North America", "English and French"),
    ("Mexico", "Mexico City", "North America", "Spanish"),
    ("Cuba", "Havana", "North America", "Spanish"),
    ("Brazil", "Brasilia", "South America", "Portuguese"),
    ("Argentina", "Buenos Aires", "South America", "Spanish"),
    ("Peru", "Lima", "South America", "Spanish"),
    ("Chile", "Santiago", "South America", "Spanish"),
    ("Australia", "Canberra", "Oceania", "English"),
];

/// (thing, its colour)
pub const COLORED_THINGS: &[(&str, &str)] = &[
    ("the sky", "blue"),
    ("grass", "green"),
    ("snow", "white"),
    ("the sun", "yellow"),
    ("a banana", "yellow"),
    ("a strawberry", "red"),
    ("an orange", "orange"),
    ("coal", "black"),
    ("a lemon", "yellow"),
    ("milk", "white"),
    ("a carrot", "orange"),
    ("a leaf", "green"),
    ("a tomato", "red"),
    ("the sea", "blue"),
    ("chocolate", "brown"),
    ("a plum", "purple"),
];

pub const NUMBER_WORDS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

pub const DAYS: &[&str] = &["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

pub const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// (season, what happens)
pub const SEASONS: &[(&str, &str)] = &[
    ("spring", "flowers begin to grow and birds build nests"),
    ("summer", "the days are long and warm"),
    ("autumn", "the leaves turn red and fall from the trees"),
    ("winter", "it is cold and sometimes it snows"),
];

pub const OPPOSITES: &[(&str, &str)] = &[
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("up", "down"),
    ("day", "night"),
    ("old", "new"),
    ("wet", "dry"),
    ("loud", "quiet"),
    ("open", "closed"),
    ("light", "dark"),
    ("full", "empty"),
    ("hard", "soft"),
    ("early", "late"),
    ("near", "far"),
];

pub const PLACES: &[&str] = &[
    "a small village",
    "a big city",
    "a house by the sea",
    "a farm near the hills",
    "a little town",
    "a cottage in the woods",
    "a flat above a bakery",
    "a house with a red door",
];

pub const OUTDOOR: &[&str] = &[
    "the park",
    "the garden",
    "the beach",
    "the forest",
    "the river",
    "the meadow",
    "the hill",
    "the playground",
    "the market",
    "the library",
    "the pond",
    "the zoo",
];

pub const ACTIVITIES: &[&str] = &[
    "play outside",
    "read books",
    "draw pictures",
    "sing songs",
    "build towers",
    "ride a bike",
    "bake cakes",
    "look at the stars",
    "plant flowers",
    "play with a ball",
    "count the clouds",
    "dance in the kitchen",
    "fly a kite",
    "collect shells",
];

/// (object, where it is found, what can go wrong, how it is put right, the happy state)
pub const TROUBLES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "kite",
        "under a tree",
        "stuck in the branches",
        "climbed up carefully and pulled it free",
        "flying high",
    ),
    ("ball", "in the grass", "flat", "pumped it full of air", "round and bouncy"),
    ("boat", "by the pond", "full of water", "scooped the water out", "floating"),
    ("tower of blocks", "on the floor", "falling down", "built it again, slowly", "tall and straight"),
    ("garden", "behind the house", "dry and thirsty", "carried water from the well", "green"),
    ("bike", "in the shed", "missing a chain", "found the chain and put it back", "ready to ride"),
    ("cake", "in the oven", "burnt on top", "baked a new one together", "warm and sweet"),
    ("map", "in an old box", "torn in two", "glued the pieces together", "whole"),
    ("lamp", "in the attic", "broken", "fixed the wire", "bright"),
    ("nest", "in the hedge", "empty and cold", "found the lost egg and brought it back", "warm"),
    ("drum", "in the music room", "too quiet", "tightened the skin", "loud and happy"),
    ("sandcastle", "on the beach", "washed away by a wave", "built a wall of sand around it", "safe"),
];

pub const GOOD_FEELINGS: &[&str] = &["happy", "glad", "proud", "excited", "calm", "thankful"];
pub const BAD_FEELINGS: &[&str] = &["sad", "worried", "upset", "scared", "lonely", "angry"];
pub const KIND_ADJECTIVES: &[&str] = &["little", "kind", "curious", "brave", "shy", "cheerful", "clever"];

/// (lesson, what the character always did from then on)
pub const MORALS: &[(&str, &str)] = &[
    ("friends help each other", "helped friends in need"),
    ("it is good to ask for help", "asked for help when things were hard"),
    ("patience is important", "took time and did things slowly"),
    ("sharing makes everyone happy", "shared with others"),
    ("it is good to be brave", "tried again when something was hard"),
    ("being kind is the best way", "was kind to everyone"),
    ("working together makes hard things easy", "worked together with friends"),
];

pub const TIMES: &[&str] = &[
    "One sunny morning",
    "One rainy afternoon",
    "One day",
    "Last summer",
    "On a cold winter day",
    "Early one morning",
    "One windy evening",
    "On a warm spring day",
];

pub const FOODS: &[&str] =
    &["soup", "bread", "apples", "pancakes", "rice", "pasta", "cheese", "eggs", "porridge", "salad"];

pub const WEATHER: &[(&str, &str)] = &[
    ("sunny", "wear a hat"),
    ("rainy", "take an umbrella"),
    ("cold", "wear a warm coat"),
    ("windy", "fly a kite"),
    ("snowy", "build a snowman"),
    ("hot", "drink lots of water"),
];
