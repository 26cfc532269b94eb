/*
 * turn/tool_templates.c - the built-in tool prompts, one per model family:
 * byte-for-byte copies of templates/tools/<family>.liquid (test_server checks
 * that they match: edit the .liquid file, then this copy).
 */
#include "slm/turn.h"

extern const char slm__tool_template_hermes[];
extern const char slm__tool_template_llama3[];
extern const char slm__tool_template_mistral[];

const char slm__tool_template_hermes[] =
    "{%- comment -%}\n"
    "  Tool prompt for models trained on Hermes-style function calling: Qwen2.5,\n"
    "  SmolLM2, Hermes and most ChatML models. It becomes the system message.\n"
    "  Variables: tools (the request's tools), tool_choice (\"auto\", \"required\" or\n"
    "  \"named\"), tool_name (with \"named\"), system (the system prompt, may be empty).\n"
    "  The model answers a call as <tool_call>{\"name\": ..., \"arguments\": "
    "{...}}</tool_call>.\n"
    "{%- endcomment -%}\n"
    "{%- if system and system != \"\" %}{{ system }}\n"
    "\n"
    "{% endif -%}\n"
    "# Tools\n"
    "\n"
    "You may call one or more functions to assist with the user query.\n"
    "\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>\n"
    "{% for tool in tools %}{{ tool | json }}\n"
    "{% endfor -%}\n"
    "</tools>\n"
    "\n"
    "For each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n"
    "<tool_call>\n"
    "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
    "</tool_call>\n"
    "{%- if tool_choice == \"required\" %}\n"
    "\n"
    "You must call at least one function.\n"
    "{%- elsif tool_choice == \"named\" %}\n"
    "\n"
    "You must call the function \"{{ tool_name }}\".\n"
    "{%- endif -%}\n";

const char slm__tool_template_llama3[] =
    "{%- comment -%}\n"
    "  Tool prompt for Llama 3.1 / 3.2 style models (JSON-based tool calling). It\n"
    "  becomes the system message. Variables: tools, tool_choice (\"auto\",\n"
    "  \"required\" or \"named\"), tool_name, system.\n"
    "  The model answers a call as {\"name\": ..., \"parameters\": {...}}.\n"
    "{%- endcomment -%}\n"
    "{%- if system and system != \"\" %}{{ system }}\n"
    "\n"
    "{% endif -%}\n"
    "You have access to the following functions. To call a function, respond with a "
    "JSON object of the form {\"name\": function name, \"parameters\": dictionary of "
    "argument name and its value}, and nothing else. Do not use variables.\n"
    "{%- if tool_choice == \"required\" %} You must call one of the functions.\n"
    "{%- elsif tool_choice == \"named\" %} You must call the function \"{{ tool_name }}\".\n"
    "{%- else %} If no function is needed, answer normally.\n"
    "{%- endif %}\n"
    "\n"
    "{% for tool in tools %}{{ tool | json }}\n"
    "\n"
    "{% endfor -%}\n";

const char slm__tool_template_mistral[] =
    "{%- comment -%}\n"
    "  Tool prompt for Mistral-style models ([INST] templates). It becomes the\n"
    "  system message. Variables: tools, tool_choice (\"auto\", \"required\" or\n"
    "  \"named\"), tool_name, system.\n"
    "  The model answers calls as [TOOL_CALLS][{\"name\": ..., \"arguments\": {...}}].\n"
    "{%- endcomment -%}\n"
    "{%- if system and system != \"\" %}{{ system }}\n"
    "\n"
    "{% endif -%}\n"
    "[AVAILABLE_TOOLS]{{ tools | json }}[/AVAILABLE_TOOLS]\n"
    "To call tools, answer with [TOOL_CALLS] followed by a JSON list of calls: "
    "[TOOL_CALLS][{\"name\": \"function name\", \"arguments\": {\"argument\": \"value\"}}]\n"
    "{%- if tool_choice == \"required\" %}\n"
    "You must call at least one tool.\n"
    "{%- elsif tool_choice == \"named\" %}\n"
    "You must call the tool \"{{ tool_name }}\".\n"
    "{%- endif -%}\n";
