"""A Lambda-style Python function: greets whoever the event names."""


def handle(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else (event or "world")
    print(f"greeting {name}")
    return {"message": f"hello, {name}!", "function": context.function_name,
            "request_id": context.aws_request_id}
