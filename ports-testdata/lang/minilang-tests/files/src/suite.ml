# minilang full-edition test suite: EXPRESSION => EXPECTED
1 + 2 * 3 => 7
(1 + 2) * 3 => 9
2 ^ 10 => 1024
2 ^ 3 ^ 2 => 512
-5 + 2 => -3
17 % 5 => 2
let x = 6; x * 7 => 6 42
let a = 3; let b = 4; a * a + b * b => 3 4 25
max(3, 9) - min(3, 9) => 6
abs(-12) => 12
