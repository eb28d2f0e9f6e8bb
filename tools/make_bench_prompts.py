"""Regenerate data/bench_prompts.jsonl: the prompts of `wm bench`, written for this project.

    python tools/make_bench_prompts.py

Seven kinds, as the suites wm bench follows use them (MarkMyWords, WaterBench): stories, reports,
news, letters, recipes, code and short factual answers. Each kind has a few hand-written templates
and hand-written topics that read naturally in every template of that kind; every (template, topic)
pair is one prompt, so the file is balanced, deterministic and has no duplicates. Each line is
{"id": "b0001", "kind": ..., "prompt": ...}, read by `textio.read_prompts` like data/prompts.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data" / "bench_prompts.jsonl"

KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "story": (
        (
            "Write a short story about {}.",
            "Tell a bedtime story about {}, in a gentle voice.",
            "Write the opening scene of a novel about {}.",
        ),
        (
            "a baker who finds a map folded inside a sack of flour",
            "a retired astronaut who teaches her grandson to read the stars",
            "two rival fishermen stranded on the same small island",
            "a clockmaker whose clocks start running backwards",
            "a girl who can hear what houseplants are thinking",
            "a night-shift nurse and the patient who never sleeps",
            "a village that votes to stop using money for a year",
            "a robot vacuum cleaner that wants to see the ocean",
            "a postman who delivers letters to the wrong century",
            "an old dog guiding a lost hiker down a mountain",
            "a chess champion who loses to a street sweeper",
            "a lighthouse that turns itself off one stormy night",
            "a translator who invents a word nobody can forget",
            "a boy who trades his shadow for a bicycle",
            "a musician who can only play in empty concert halls",
        ),
    ),
    "report": (
        (
            "Write a short report on {}.",
            "Prepare a one-page briefing for a city council on {}.",
            "Summarise the main findings of a study on {}, as a report for managers.",
        ),
        (
            "energy use in public schools over the last decade",
            "the effects of remote work on small businesses",
            "water quality in rivers that flow through farmland",
            "the reliability of a city's bus network in winter",
            "food waste in university cafeterias",
            "the growth of bicycle commuting in mid-sized towns",
            "noise levels near a regional airport",
            "the cost of maintaining old railway bridges",
            "how libraries are used by teenagers",
            "recycling rates for electronic devices",
            "the spread of an invasive beetle in city parks",
            "waiting times in hospital emergency departments",
            "air conditioning demand during heat waves",
            "the survival rate of new restaurants",
            "the quality of drinking water in rural wells",
        ),
    ),
    "news": (
        (
            "Write a news article about {}.",
            "Write a brief news report on {}, with a quote from a local resident.",
            "Write the first paragraphs of a newspaper story about {}.",
        ),
        (
            "a town that reopens its railway station after forty years",
            "a heat wave that breaks temperature records in the north",
            "a museum that returns stolen paintings to their owners",
            "a new bridge that opens two years ahead of schedule",
            "a school robotics team that wins a national contest",
            "a storm that floods the old harbour district",
            "a rare bird seen for the first time in a century",
            "a factory that switches entirely to solar power",
            "a marathon run by ten thousand volunteers for charity",
            "a city that bans cars from its centre on Sundays",
            "an archaeological find beneath a supermarket car park",
            "a power outage that leaves a region dark for a day",
            "a farmer who grows the heaviest pumpkin in the country",
            "a library that stops charging late fees",
            "a ferry service that resumes after a long strike",
        ),
    ),
    "letter": (
        (
            "Write a letter {}.",
            "Write a polite email {}.",
            "Draft a short, warm note {}.",
        ),
        (
            "to a neighbour asking them to keep their dog quiet at night",
            "to a former teacher, thanking her for a lesson you still remember",
            "to a landlord about a heating system that keeps failing",
            "to a friend who has just moved to another country",
            "to a company complaining about a late delivery",
            "to a grandmother describing your first week at university",
            "to a hiring manager following up after an interview",
            "to a local newspaper in support of a new park",
            "to a colleague who is retiring after thirty years",
            "to a hotel asking about a bag you left behind",
            "to a city office requesting a permit for a street party",
            "to a pen pal describing the town you live in",
            "to a customer apologising for a billing mistake",
            "to a sports coach asking to join the team mid-season",
            "to your future self, to be opened in ten years",
        ),
    ),
    "recipe": (
        (
            "Write a recipe for {}.",
            "Explain step by step how to cook {} at home.",
            "Give a simple recipe for {}, with a list of ingredients first.",
        ),
        (
            "a lentil soup with smoked paprika",
            "banana bread without eggs",
            "a tomato and basil pasta sauce",
            "crispy roast potatoes with rosemary",
            "a vegetable curry with coconut milk",
            "pancakes for four people",
            "a chickpea salad with lemon dressing",
            "homemade pizza dough",
            "a mushroom risotto",
            "oatmeal cookies with raisins",
            "a quick chicken stir-fry",
            "a cold cucumber yoghurt soup",
            "apple crumble with cinnamon",
            "a spinach and cheese omelette",
            "a pot of spiced rice with peas",
        ),
    ),
    "code": (
        (
            "Write a Python function that {}, and explain how it works.",
            "Show how to write a program that {}, with comments.",
            "Write a short code example that {}, then describe its running time.",
        ),
        (
            "checks whether a word is a palindrome",
            "counts how often each word appears in a text file",
            "merges two sorted lists into one sorted list",
            "converts a temperature from Celsius to Fahrenheit",
            "finds the largest number in a list without using max",
            "removes duplicate entries from a list while keeping their order",
            "reads a CSV file and prints the average of one column",
            "reverses the words in a sentence",
            "tests whether a number is prime",
            "computes the factorial of a number",
            "validates that a password has a digit and a capital letter",
            "returns the n-th Fibonacci number",
            "groups a list of names by their first letter",
            "computes the number of days between two dates",
            "flattens a list of lists into a single list",
        ),
    ),
    "factual": (
        (
            "In a few sentences, {}",
            "Answer briefly: {}",
            "Give a short, clear answer: {}",
        ),
        (
            "why is the sky blue?",
            "how do bees make honey?",
            "what causes the seasons on Earth?",
            "why does ice float on water?",
            "how does a refrigerator keep food cold?",
            "what is the difference between weather and climate?",
            "why do we have leap years?",
            "how do plants take in water?",
            "what makes a rainbow appear?",
            "why does bread rise when it bakes?",
            "how does a compass find north?",
            "what is the tallest mountain on Earth and where is it?",
            "why do cats purr?",
            "how do vaccines protect people from disease?",
            "what is photosynthesis?",
        ),
    ),
}


def prompts() -> list[dict[str, str]]:
    """Every (template, topic) pair of every kind, interleaved by kind so any prefix is balanced."""
    per_kind = {
        kind: [t.format(topic) for t in templates for topic in topics]
        for kind, (templates, topics) in KINDS.items()
    }
    rows: list[dict[str, str]] = []
    for i in range(max(len(v) for v in per_kind.values())):
        for kind, texts in per_kind.items():
            if i < len(texts):
                rows.append({"id": f"b{len(rows) + 1:04d}", "kind": kind, "prompt": texts[i]})
    texts = [r["prompt"] for r in rows]
    assert len(set(texts)) == len(texts), "duplicate prompts"
    return rows


def main() -> None:
    rows = prompts()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} prompts -> {OUT}")


if __name__ == "__main__":
    main()
