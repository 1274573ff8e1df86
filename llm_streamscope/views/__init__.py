"""Views: terminal renderables, alignment and live views, timeline, HTML, SVG, JSON documents."""
