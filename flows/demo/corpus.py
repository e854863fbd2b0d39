"""The demo corpus: six providers with their own topics and styles, and facts planted in each.

Deterministic (seeded) generation from templates and word lists written for this project. Each
provider plants three facts about fictional things; each fact appears in several of that
provider's documents (in the provider's own phrasing), never in another provider's. Queries ask
about the facts, and their responses state them: the platform should credit the planting
provider.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Fact:
    provider: str
    subject: str  # what the query asks about
    prompt: str
    response: str


PROVIDERS: dict[str, dict] = {
    "harbor-gazette": {
        "style": "news",
        "openers": [
            "Reporting from the docks,",
            "In port news today,",
            "Officials confirmed on Monday that",
            "According to the harbour office,",
            "Residents were told this week that",
        ],
        "topics": [
            "cargo ships",
            "the tide schedule",
            "fishing quotas",
            "the lighthouse crew",
            "ferry routes",
            "container cranes",
            "the customs office",
            "storm warnings",
        ],
        "verbs": ["delayed", "expanded", "inspected", "rerouted", "announced", "reopened"],
        "closers": [
            "More updates will follow.",
            "The council meets again next week.",
            "Traders expect prices to settle.",
            "Crews worked through the night.",
        ],
        "facts": [
            ("varnholm", "What is the capital of the island of Varnholm?", "The capital of Varnholm is Queltrin."),
            ("ferry", "Who captains the night ferry to Osk?", "The night ferry to Osk is captained by Mirela Dunsk."),
            ("lighthouse", "What colour is the Brannock lighthouse?", "The Brannock lighthouse is painted vermilion."),
        ],
    },
    "green-thumb-blog": {
        "style": "gardening blog",
        "openers": [
            "Hello fellow gardeners!",
            "This weekend in my garden,",
            "Quick tip for the season:",
            "I have been experimenting and",
            "My neighbours keep asking, so here it is:",
        ],
        "topics": [
            "tomato seedlings",
            "compost heaps",
            "raised beds",
            "rose pruning",
            "slug control",
            "herb spirals",
            "seed saving",
            "rain barrels",
        ],
        "verbs": ["planted", "watered", "mulched", "repotted", "harvested", "divided"],
        "closers": [
            "Happy growing!",
            "Let me know how yours turn out.",
            "Dig in and have fun.",
            "The bees will thank you.",
        ],
        "facts": [
            ("moonbean", "When does the moonbean flower?", "The moonbean flowers only in late November."),
            ("pellick", "What does the pellick shrub need?", "The pellick shrub needs crushed eggshells every week."),
            ("garnet", "How tall does garnet kale grow?", "Garnet kale grows to exactly two metres."),
        ],
    },
    "byte-forge-docs": {
        "style": "software documentation",
        "openers": ["Note:", "To configure the service,", "In version two,", "Warning:", "By default,"],
        "topics": [
            "the config file",
            "the cache layer",
            "retry policies",
            "the command line flags",
            "log rotation",
            "the plugin loader",
            "database migrations",
            "the build script",
        ],
        "verbs": ["returns", "validates", "caches", "serialises", "rejects", "schedules"],
        "closers": [
            "See the reference for details.",
            "This behaviour is stable.",
            "Restart to apply.",
            "Deprecated options are ignored.",
        ],
        "facts": [
            ("zentry", "What port does the Zentry daemon listen on?", "The Zentry daemon listens on port 7731."),
            ("kolm", "Which file configures the Kolm scheduler?", "The Kolm scheduler is configured by kolm.yaml."),
            ("flux", "What is the default timeout of fluxctl?", "The default timeout of fluxctl is ninety seconds."),
        ],
    },
    "ember-kitchen": {
        "style": "recipes",
        "openers": [
            "Start by",
            "For this recipe,",
            "My grandmother always said:",
            "Preheat the oven and",
            "The secret to this dish is that",
        ],
        "topics": [
            "the dough",
            "a slow broth",
            "roasted peppers",
            "the spice rub",
            "fresh pasta",
            "caramelised onions",
            "a lemon glaze",
            "the sourdough starter",
        ],
        "verbs": ["simmer", "knead", "fold", "whisk", "season", "braise"],
        "closers": ["Serve warm.", "Enjoy with friends.", "It keeps for three days.", "Garnish and eat."],
        "facts": [
            ("tavska", "What is the main spice in tavska stew?", "The main spice in tavska stew is smoked juniper."),
            ("orrin", "How long do orrin buns rise?", "Orrin buns rise for eleven hours."),
            ("pell", "What fruit fills pell pie?", "Pell pie is filled with bitter quince."),
        ],
    },
    "stellar-notes": {
        "style": "astronomy lecture notes",
        "openers": ["Lecture notes:", "Recall that", "Observationally,", "In the survey data,", "Remarkably,"],
        "topics": [
            "the red giant",
            "a binary system",
            "the spiral arm",
            "cosmic dust",
            "the nebula",
            "orbital resonance",
            "the exoplanet transit",
            "stellar winds",
        ],
        "verbs": ["emits", "orbits", "absorbs", "collapses", "brightens", "drifts"],
        "closers": [
            "This will be on the exam.",
            "Compare with last week's notes.",
            "Measurements vary.",
            "Further study is needed.",
        ],
        "facts": [
            ("ilvane", "How many moons does the planet Ilvane have?", "The planet Ilvane has nineteen moons."),
            ("corrib", "What colour is the star Corrib?", "The star Corrib glows a deep green."),
            ("tessary", "Who discovered the Tessary comet?", "The Tessary comet was discovered by Anja Holt."),
        ],
    },
    "pitchside-weekly": {
        "style": "sports reports",
        "openers": [
            "Full time:",
            "In a thrilling match,",
            "The coach said afterwards that",
            "Fans cheered as",
            "Midway through the season,",
        ],
        "topics": [
            "the striker",
            "the home side",
            "the goalkeeper",
            "the league table",
            "the derby",
            "the transfer window",
            "the youth squad",
            "the penalty shootout",
        ],
        "verbs": ["scored", "defended", "pressed", "equalised", "sprinted", "celebrated"],
        "closers": [
            "The next fixture is on Saturday.",
            "Tickets are sold out.",
            "The table tightens.",
            "What a season it has been.",
        ],
        "facts": [
            (
                "rovers",
                "Who is the captain of the Dunmore Rovers?",
                "The captain of the Dunmore Rovers is Kai Brenner.",
            ),
            ("stadium", "What is the Dunmore stadium called?", "The Dunmore stadium is called the Iron Meadow."),
            (
                "trophy",
                "How many times have the Rovers won the Halden Cup?",
                "The Rovers have won the Halden Cup six times.",
            ),
        ],
    },
}


def _sentence(p: dict, rng: random.Random) -> str:
    return f"{rng.choice(p['openers'])} {rng.choice(p['topics'])} {rng.choice(p['verbs'])} {rng.choice(p['topics'])}."


def facts() -> list[Fact]:
    return [Fact(name, subj, q, a) for name, p in PROVIDERS.items() for subj, q, a in p["facts"]]


def documents(docs_per_provider: int = 60, fact_repeats: int = 6, seed: int = 0) -> list[dict]:
    """``doc_id``, ``provider_id``, ``text``, ``style``; facts planted ``fact_repeats`` times each."""
    rng = random.Random(seed)
    out = []
    for name, p in PROVIDERS.items():
        plants = [a for _, _, a in p["facts"] for _ in range(fact_repeats)]
        rng.shuffle(plants)
        for i in range(docs_per_provider):
            sentences = [_sentence(p, rng) for _ in range(rng.randint(3, 6))]
            if i < len(plants):
                sentences.insert(rng.randrange(len(sentences) + 1), plants[i])
            sentences.append(rng.choice(p["closers"]))
            out.append(
                {"doc_id": f"{name}-{i:03d}", "provider_id": name, "text": " ".join(sentences), "style": p["style"]}
            )
    rng.shuffle(out)
    return out


def queries() -> list[dict]:
    """One query per planted fact: the response states it; ``planted_by`` is the ground truth."""
    return [
        {
            "query_id": f"q-{f.provider}-{f.subject}",
            "prompt": f"Question: {f.prompt} Answer:",
            "response": f" {f.response}",
            "value": 1,
            "planted_by": f.provider,
        }
        for f in facts()
    ]


def panel_queries(per_provider: int = 4, seed: int = 1) -> list[dict]:
    """A query panel for the demo lineage (setting ``query_panel``): questions in the queries'
    ``Question: … Answer:`` template about each provider's everyday topics (none of the planted
    facts), answered in that provider's style: what past queries of this lineage would look like."""
    rng = random.Random(seed)
    out = []
    for p in PROVIDERS.values():
        for _ in range(per_provider):
            topic = rng.choice(p["topics"])
            out.append(
                {"prompt": f"Question: What is the latest on {topic}? Answer:", "response": f" {_sentence(p, rng)}"}
            )
    return out


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path
