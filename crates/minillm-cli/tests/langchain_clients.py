"""LangChain against `minillm serve` (run by tests/serve.rs with the server's URL): the chat
model's tools (bind_tools, a call, its result, an answer) and structured output both ways
(response_format json_schema and a forced tool call), and the completions LLM's invoke and
batch. Outputs are checked with `jsonschema`; the model has random weights, so only the shape
and validity are asserted, which constrained decoding must guarantee whatever the weights."""
import sys
from typing import Literal

import jsonschema
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAI
from pydantic import BaseModel, Field

base = sys.argv[1] + "/v1"
chat = ChatOpenAI(base_url=base, api_key="not-needed", model="long", temperature=1.0, max_tokens=200)


# Bounded arguments: a random model would otherwise write a string until its budget ran out.
@tool
def get_weather(city: Literal["Lima", "Rome"]) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


with_tools = chat.bind_tools([get_weather], tool_choice="get_weather", parallel_tool_calls=False, strict=True)
question = HumanMessage("What is the weather in Lima?")
call_message = with_tools.invoke([question])
(call,) = call_message.tool_calls
assert call["name"] == "get_weather" and call["args"]["city"] in ("Lima", "Rome"), call
result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
answer = chat.bind_tools([get_weather]).invoke([question, call_message, result], max_tokens=8)
assert isinstance(answer.content, str), answer
print("langchain tools ok:", call["args"])


class City(BaseModel):
    name: str = Field(max_length=12)
    population: int = Field(ge=0, le=100)


for method in ("json_schema", "function_calling"):
    city = chat.with_structured_output(City, method=method, strict=True).invoke("Name a city.")
    assert isinstance(city, City), city
    jsonschema.validate(city.model_dump(), City.model_json_schema())
    print(f"langchain structured output ({method}) ok:", city)

llm = OpenAI(base_url=base, api_key="not-needed", model="long", max_tokens=6, temperature=1.0)
one = llm.invoke("It was")
many = llm.batch(["It was", "Once upon a time", "The end"])
assert isinstance(one, str) and len(many) == 3 and all(isinstance(t, str) for t in many), (one, many)
print("langchain completions ok")
