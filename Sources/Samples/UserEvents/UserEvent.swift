public enum UserEventsPlaceholder {}
