"""Store: traces in llm's logs.db: migrations, the streaming writer, checked reading, saving."""
