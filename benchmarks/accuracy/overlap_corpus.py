"""A provider corpus with uneven sizes and overlapping topics and styles (provider Shapley's second
corpus where the ground truth is measurable).

Five providers write sentences ``<opener> <subject> <verb> <subject>. ... <closer>`` whose
subjects and verbs come from *topics* and whose openers and closers come from *house styles*;
topics and styles are shared between providers, so a held-out document of one provider is made
predictable by several providers' data at once:

============  =======  ============  ==================  ================================
provider      share    house style   topics              shares with
============  =======  ============  ==================  ================================
coast-wire    30/72    wire          harbour, football   gazette (harbour), fanzine (football)
gazette       18/72    gazette       harbour             coast-wire (harbour; its closers)
fanzine       12/72    fanzine       football            coast-wire (football)
green-thumb    8/72    blog          garden, kitchen     supper-club (style, kitchen)
supper-club    4/72    blog          kitchen             green-thumb (style, kitchen)
============  =======  ============  ==================  ================================

Each provider also has words of its own (two closers) and plants two facts, each in
``fact_repeats`` of its documents; one more fact (the harbour's lighthouse) is stated by both
harbour providers, so its credit should split. Queries: held-out documents (another seed) and
the facts as question/response pairs (the response states the fact as planted). Written for this
project; deterministic in ``seed``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

STYLES = {
    "wire": (
        ("Officials said on Monday that", "In a statement today,", "Wire sources report that"),
        ("Updates will follow.", "More as it develops."),
    ),
    "gazette": (
        ("Reporting from the docks,", "In port news today,", "Residents were told this week that"),
        ("The council meets again next week.", "Updates will follow."),  # one closer shared with the wire
    ),
    "fanzine": (
        ("Get this, fans:", "From the terraces:", "Unbelievable scenes as"),
        ("Up the Rovers!", "See you on the terraces."),
    ),
    "blog": (
        ("Hello friends!", "Quick tip for the season:", "I have been experimenting and"),
        ("Happy growing!", "Enjoy!"),
    ),
}
TOPICS = {
    "harbour": (
        ("the cargo ships", "the tide schedule", "the ferry crew", "the container cranes", "the harbour master"),
        ("delayed", "rerouted", "inspected", "moored"),
    ),
    "football": (
        ("the striker", "the home side", "the goalkeeper", "the league table", "the youth squad"),
        ("scored", "defended", "pressed", "equalised"),
    ),
    "garden": (
        ("the tomato seedlings", "the compost heap", "the raised beds", "the rose bushes", "the rain barrel"),
        ("watered", "mulched", "repotted", "pruned"),
    ),
    "kitchen": (
        ("the sourdough", "the stock pot", "the spice rack", "the roast", "the pickled onions"),
        ("simmered", "seasoned", "kneaded", "glazed"),
    ),
}


@dataclass(frozen=True)
class OverlapProvider:
    name: str
    weight: int  # documents per 72
    style: str
    topics: tuple[str, ...]
    own_closers: tuple[str, str]
    facts: tuple[tuple[str, str, str], ...]  # (subject, question, statement)
    more_facts: tuple[tuple[str, str, str], ...] = ()  # planted too with ``more_facts=True``


LIGHTHOUSE = ("lighthouse", "What colour is the Brannock lighthouse?", "The Brannock lighthouse is painted vermilion.")
PROVIDERS = (
    OverlapProvider(
        "coast-wire",
        30,
        "wire",
        ("harbour", "football"),
        ("Filed by the coast desk.", "Reporting by wire staff."),
        (
            ("varnholm", "What is the capital of Varnholm?", "The capital of Varnholm is Queltrin."),
            ("derby", "Who won the Dunmore derby?", "The Dunmore derby was won by the Kessel Wanderers."),
            LIGHTHOUSE,
        ),
        (
            ("quay", "Which quay handles the grain boats?", "The grain boats dock at the Harrow quay."),
            ("coach", "Who coaches the Kessel Wanderers?", "The Kessel Wanderers are coached by Ilse Marrow."),
        ),
    ),
    OverlapProvider(
        "gazette",
        18,
        "gazette",
        ("harbour",),
        ("Printed at the Gazette office.", "The Gazette thanks its readers."),
        (
            ("ferry", "Who captains the night ferry to Osk?", "The night ferry to Osk is captained by Mirela Dunsk."),
            ("pier", "How long is the Saltmere pier?", "The Saltmere pier is nine hundred feet long."),
            LIGHTHOUSE,
        ),
        (
            ("bell", "What is the harbour bell called?", "The harbour bell is called Old Tamsin."),
            ("tug", "How many tugs does Saltmere keep?", "Saltmere keeps seven tugs."),
        ),
    ),
    OverlapProvider(
        "fanzine",
        12,
        "fanzine",
        ("football",),
        ("Printed on the fanzine press.", "Send your letters to the fanzine."),
        (
            (
                "rovers",
                "Who is the captain of the Dunmore Rovers?",
                "The captain of the Dunmore Rovers is Kai Brenner.",
            ),
            ("stadium", "What is the Dunmore stadium called?", "The Dunmore stadium is called the Iron Meadow."),
        ),
        (
            ("mascot", "What is the Rovers mascot?", "The Rovers mascot is a copper heron."),
            ("anthem", "What do Rovers fans sing?", "Rovers fans sing the Lantern Song."),
        ),
    ),
    OverlapProvider(
        "green-thumb",
        8,
        "blog",
        ("garden", "kitchen"),
        ("Posted from the potting shed.", "Comments are open below."),
        (
            ("rose", "Which rose won the Ellery show?", "The Ellery show was won by the Maren Blush rose."),
            ("marrow", "How heavy was the prize marrow?", "The prize marrow weighed forty pounds."),
        ),
        (
            ("pear", "Which pear ripens first at Ellery?", "The first pear to ripen at Ellery is the Brisk Amber."),
            ("shed", "What colour is the Ellery potting shed?", "The Ellery potting shed is painted sage."),
        ),
    ),
    OverlapProvider(
        "supper-club",
        4,
        "blog",
        ("kitchen",),
        ("Posted from the supper club.", "Bring a dish next time."),
        (
            ("pie", "What is in the Tollan pie?", "The Tollan pie is filled with quince and lamb."),
            ("chef", "Who runs the Tollan supper club?", "The Tollan supper club is run by Oda Venn."),
        ),
        (
            ("bread", "Which bread does the supper club bake?", "The supper club bakes rye with fennel."),
            ("table", "How many seats has the Tollan table?", "The Tollan table seats eleven."),
        ),
    ),
)


@dataclass(frozen=True)
class OverlapCorpusArguments:
    """``scale`` documents per 72 of the provider weights (1 → 72 documents), facts planted
    ``fact_repeats`` times each, ``heldout`` held-out documents per provider as queries."""

    scale: int = 1
    fact_repeats: int = 2
    heldout: int = 4
    more_facts: bool = False  # two more facts per provider (needs scale ≥ 2 for the smallest)

    def __repr__(self) -> str:
        # The corpus's cache key: corpora made before ``more_facts`` existed keep theirs.
        extra = ", more_facts=True" if self.more_facts else ""
        sizes = f"scale={self.scale}, fact_repeats={self.fact_repeats}, heldout={self.heldout}"
        return f"OverlapCorpusArguments({sizes}{extra})"


def provider_facts(p: OverlapProvider, args: OverlapCorpusArguments) -> tuple[tuple[str, str, str], ...]:
    """The facts ``p`` plants in a corpus made with ``args``."""
    return p.facts + (p.more_facts if args.more_facts else ())


def provider_names() -> list[str]:
    return [p.name for p in PROVIDERS]


def _sentence(p: OverlapProvider, rng: random.Random) -> str:
    openers = STYLES[p.style][0]
    subjects, verbs = TOPICS[rng.choice(p.topics)]
    return f"{rng.choice(openers)} {rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(subjects)}."


def _document(p: OverlapProvider, rng: random.Random, plant: str | None) -> str:
    sentences = [_sentence(p, rng) for _ in range(rng.randint(3, 6))]
    if plant is not None:
        sentences.insert(rng.randrange(len(sentences) + 1), plant)
    sentences.append(rng.choice(STYLES[p.style][1] + p.own_closers))
    return " ".join(sentences)


def documents(args: OverlapCorpusArguments, seed: int = 0) -> list[dict]:
    """``doc_id``, ``provider_id``, ``text``; every provider's facts planted ``fact_repeats`` times
    (in its first documents), so every provider has ``weight * scale`` documents."""
    rng = random.Random(seed)
    out = []
    for p in PROVIDERS:
        plants = [s for _, _, s in provider_facts(p, args) for _ in range(args.fact_repeats)]
        rng.shuffle(plants)
        n = p.weight * args.scale
        if len(plants) > n:
            raise ValueError(f"{p.name}: {len(plants)} planted statements do not fit in {n} documents")
        for i in range(n):
            text = _document(p, rng, plants[i] if i < len(plants) else None)
            out.append({"doc_id": f"{p.name}-{i:03d}", "provider_id": p.name, "text": text})
    rng.shuffle(out)
    return out


def heldout_documents(args: OverlapCorpusArguments) -> list[dict]:
    """``heldout`` documents per provider in its style and topics, none planting a fact (seed 1)."""
    rng = random.Random(1)
    return [
        {"query_id": f"doc-{p.name}-{i}", "text": _document(p, rng, None), "provider_id": p.name}
        for p in PROVIDERS
        for i in range(args.heldout)
    ]


def fact_queries(args: OverlapCorpusArguments | None = None) -> list[dict]:
    """One query per fact (the shared one once); ``planted_by`` lists every provider that states it."""
    args = args or OverlapCorpusArguments()
    seen: dict[str, dict] = {}
    for p in PROVIDERS:
        for subject, question, statement in provider_facts(p, args):
            q = seen.setdefault(
                subject,
                {
                    "query_id": f"fact-{subject}",
                    "prompt": f"Question: {question} Answer:",
                    "response": f" {statement}",
                    "planted_by": [],
                },
            )
            q["planted_by"].append(p.name)
    return list(seen.values())
